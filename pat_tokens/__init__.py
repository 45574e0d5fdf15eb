"""Personal access and refresh tokens for Django REST framework."""

__version__ = "0.1.0.dev0"
