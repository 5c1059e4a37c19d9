"""Graph to program, passes, fusion and code generation."""
