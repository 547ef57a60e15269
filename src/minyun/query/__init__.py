"""Row queries on resources: fields, filters, sorting, cursor paging, time travel."""
