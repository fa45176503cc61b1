"""Research for the `local` recipe: a dev set, every candidate call drawn once, scored offline."""
