"""The steward's pages: the catalog and load services on the web, for departments' stewards."""
