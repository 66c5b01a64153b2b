"""MLflow wiring for agehpo: the study tracker, the model registry, the report card."""
