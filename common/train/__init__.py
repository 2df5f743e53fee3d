"""Training: the shared epoch helpers and the three trainers (-t length, -t pose, -t mix) with their flags."""
