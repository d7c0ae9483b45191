-- Schema 3: the classifiers asked about a failed attempt, with their answers.
ALTER TABLE attempts ADD COLUMN consulted TEXT;
