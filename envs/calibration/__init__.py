"""A real shop's data in fusionsim: the catalog and impression schemas, readers of fusionsim's own logs into
them, and the fitted parts of the shopper model (position bias first)."""
