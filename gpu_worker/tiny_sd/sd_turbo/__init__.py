"""Architecture configs (JSON) for the random-weight GPU benchmark; nothing is downloaded."""
