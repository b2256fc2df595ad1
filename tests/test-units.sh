#!/bin/bash
echo PASS
