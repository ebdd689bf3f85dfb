"""The grading engine: sandboxed execution, comparison, feedback, scoring and reports."""
