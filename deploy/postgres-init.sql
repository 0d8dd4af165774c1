-- Run once by the postgres image on an empty volume: a second database for MLflow's runs
-- (the first, POSTGRES_DB=optuna, holds the studies).
CREATE DATABASE mlflow OWNER tuner;
