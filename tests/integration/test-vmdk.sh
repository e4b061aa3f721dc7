#!/bin/sh
. "$TESTLIB"
echo PASS
