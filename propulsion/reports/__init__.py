"""Tables, figures and studies rendered from run records (make tables)."""
