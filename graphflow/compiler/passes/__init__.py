"""Compiler passes: each a function Program -> Program that appends what it did to a report."""
