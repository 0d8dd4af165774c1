"""After the search: best.yaml in and out, the final refit and test, the saved model and its predictions."""
