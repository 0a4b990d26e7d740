"""The systems Spool is compared with, each as small as a tutorial user would write it."""
