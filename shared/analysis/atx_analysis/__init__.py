"""Load, normalise and analyse the City of Austin real-time traffic incident data."""
