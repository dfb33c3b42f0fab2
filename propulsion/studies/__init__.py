"""Studies of cost and behaviour around the runs: plan (cost before launch), bench (cost side by side), ntk."""
