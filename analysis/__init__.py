"""Analysis of grid-study results: scores, statistics and figures, from tables only."""
