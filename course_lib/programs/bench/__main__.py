"""python -m course_lib.programs.bench"""
from course_lib.programs.bench.cli import main

main()
