#!/bin/sh
echo "SKIP: the Check unit test framework was not found by configure; install check (libcheck) and re-run configure"
exit 77
