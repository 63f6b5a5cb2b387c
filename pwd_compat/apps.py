from django.apps import AppConfig


class PwdCompatConfig(AppConfig):
    name = "pwd_compat"
    verbose_name = "Play with Docker compatibility"
