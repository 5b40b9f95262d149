"""Image providers: one module per wire API, plus the offline demo provider."""
