# VRAMFS_CXX20
# ------------
# Make sure $CXX compiles C++20, adding -std=c++20 when the compiler's default
# is older.  Fails configure when no spelling works.
AC_DEFUN([VRAMFS_CXX20], [
  AC_LANG_PUSH([C++])
  AC_CACHE_CHECK([for the flag that enables C++20], [vramfs_cv_cxx20_flag], [
    vramfs_cv_cxx20_flag=no
    vramfs_save_CXX=$CXX
    for vramfs_flag in "" -std=c++20 -std=c++2a; do
      CXX="$vramfs_save_CXX $vramfs_flag"
      AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[
#include <span>
#include <bit>
#if __cplusplus < 202002L
#error not C++20
#endif
        ]], [[std::span<int> s; return std::popcount(1u) - 1 + (int)s.size();]])],
        [vramfs_cv_cxx20_flag=${vramfs_flag:-none needed}; CXX=$vramfs_save_CXX; break])
      CXX=$vramfs_save_CXX
    done])
  AC_LANG_POP([C++])
  AS_CASE([$vramfs_cv_cxx20_flag],
    [no], [AC_MSG_ERROR([$CXX does not compile C++20; install g++ 10 or newer])],
    ["none needed"], [],
    [CXX="$CXX $vramfs_cv_cxx20_flag"])
])
