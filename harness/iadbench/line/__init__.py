"""On the line: watching a camera or a folder, operator feedback, model updates and drift."""
