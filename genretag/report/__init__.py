"""Pages for people: the library report (SQL aggregates, then HTML) and the training-data explorer."""
