"""What `dvt-cds serve --production` runs: gunicorn behind an nginx front it starts and supervises."""
