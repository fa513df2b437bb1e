"""Where and how code runs: device and dtype resolution, software versions and device names for reports."""
