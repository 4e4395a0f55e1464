"""The local playground: a simulated group chat in the browser and its JSON API."""
