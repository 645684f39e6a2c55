"""Running a grid: plan -> cells -> executor (one process per cell) -> store."""
