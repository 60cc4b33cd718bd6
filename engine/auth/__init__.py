"""Authentication: principals, authenticators and user-id providers."""
