# VRAMFS_CHECK_CUDA
# -----------------
# --with-cuda[=DIR]: look for the CUDA runtime (cuda_runtime.h, libcudart_static)
# and the driver API header (cuda.h, for lazy VRAM mapping).  Without the
# option, DIR defaults to /usr/local/cuda and then the system paths, and a
# missing toolkit only disables the CUDA backend.  --with-cuda given
# explicitly but not found is an error; --without-cuda skips the search.
# Sets have_cuda=yes|no, CUDA_CPPFLAGS, CUDA_LDFLAGS, CUDA_LIBS and the
# automake conditional HAVE_CUDA.
AC_DEFUN([VRAMFS_CHECK_CUDA], [
  AC_ARG_WITH([cuda],
    [AS_HELP_STRING([--with-cuda@<:@=DIR@:>@],
      [build the CUDA backend, with the toolkit in DIR (default: look in /usr/local/cuda and the system paths)])],
    [], [with_cuda=check])

  have_cuda=no
  CUDA_CPPFLAGS=
  CUDA_LDFLAGS=
  CUDA_LIBS=
  AS_IF([test "x$with_cuda" != xno], [
    AS_CASE([$with_cuda],
      [yes|check], [vramfs_cuda_dirs="/usr/local/cuda /usr"],
      [vramfs_cuda_dirs=$with_cuda])
    vramfs_save_CPPFLAGS=$CPPFLAGS
    vramfs_save_LDFLAGS=$LDFLAGS
    vramfs_save_LIBS=$LIBS
    AC_LANG_PUSH([C++])
    for vramfs_dir in $vramfs_cuda_dirs; do
      AC_MSG_CHECKING([for the CUDA toolkit in $vramfs_dir])
      vramfs_libdir=$vramfs_dir/lib64
      test -d "$vramfs_libdir" || vramfs_libdir=$vramfs_dir/lib
      AS_IF([test "x$vramfs_dir" = x/usr], [vramfs_inc=], [vramfs_inc="-I$vramfs_dir/include"])
      # The runtime is linked statically and the driver API (libcuda, which
      # comes with the GPU driver, not the toolkit) is reached through
      # cudaGetDriverEntryPoint, so the binary starts on machines without a
      # driver and serves backend=host there.
      CPPFLAGS="$vramfs_save_CPPFLAGS $vramfs_inc"
      LDFLAGS="$vramfs_save_LDFLAGS -L$vramfs_libdir"
      LIBS="-lcudart_static -ldl -lrt -lpthread $vramfs_save_LIBS"
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[
#include <cuda.h>
#include <cuda_runtime.h>
        ]], [[int n = 0; void *fn = 0; cudaDriverEntryPointQueryResult q;
              cudaGetDeviceCount(&n);
              cudaGetDriverEntryPointByVersion("cuMemCreate", &fn, 12000, cudaEnableDefault, &q);
              CUmemGenericAllocationHandle h = 0; return (int)h + n;]])],
        [have_cuda=yes
         CUDA_CPPFLAGS=$vramfs_inc
         CUDA_LDFLAGS="-L$vramfs_libdir"
         CUDA_LIBS="-lcudart_static -ldl -lrt -lpthread"
         AC_MSG_RESULT([yes])],
        [AC_MSG_RESULT([no])])
      test "x$have_cuda" = xyes && break
    done
    AC_LANG_POP([C++])
    CPPFLAGS=$vramfs_save_CPPFLAGS
    LDFLAGS=$vramfs_save_LDFLAGS
    LIBS=$vramfs_save_LIBS
    AS_IF([test "x$have_cuda" = xno && test "x$with_cuda" != xcheck],
      [AC_MSG_ERROR([--with-cuda was given but no usable CUDA toolkit (cuda.h, cuda_runtime.h, libcudart_static) was found in $vramfs_cuda_dirs])])
  ])
  AS_IF([test "x$have_cuda" = xyes],
    [AC_DEFINE([HAVE_CUDA], [1], [Define to 1 to build the CUDA backend.])])
  # The copy engine's kernel (src/store/copy_kernel.cu) needs nvcc from the
  # same toolkit; without it the CUDA backend copies with DMA only.
  have_nvcc=no
  AS_IF([test "x$have_cuda" = xyes], [
    AC_PATH_PROG([NVCC], [nvcc], [], [$vramfs_dir/bin$PATH_SEPARATOR$PATH])
    AS_IF([test -n "$NVCC"], [have_nvcc=yes])
  ])
  AC_ARG_VAR([NVCC_ARCH_FLAGS], [nvcc's -gencode flags for the copy engine (default: every
    architecture CUDA 13 builds for, Turing to Blackwell, with PTX for newer ones)])
  AS_IF([test -z "$NVCC_ARCH_FLAGS"], [NVCC_ARCH_FLAGS="-gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_100,code=sm_100 -gencode arch=compute_120,code=sm_120 -gencode arch=compute_120,code=compute_120"])
  AS_IF([test "x$have_nvcc" = xyes],
    [AC_DEFINE([HAVE_COPY_ENGINE], [1], [Define to 1 to build the GPU copy engine.])])
  AC_SUBST([NVCC])
  AM_CONDITIONAL([HAVE_COPY_ENGINE], [test "x$have_nvcc" = xyes])
  AC_SUBST([CUDA_CPPFLAGS])
  AC_SUBST([CUDA_LDFLAGS])
  AC_SUBST([CUDA_LIBS])
  AM_CONDITIONAL([HAVE_CUDA], [test "x$have_cuda" = xyes])
])
