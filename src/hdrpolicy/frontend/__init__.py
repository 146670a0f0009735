"""The front end: policy text → checked IR (parse, lower, check), with its limits."""
