"""Fixtures for the sample app's tests: an app factory over a given environment and its test client."""

from collections.abc import Callable

import pytest
from app import create_app
from flask import Flask
from flask.testing import FlaskClient


@pytest.fixture
def make_client() -> Callable[..., FlaskClient]:
    def build(**env: str) -> FlaskClient:
        app: Flask = create_app({"APP_VERSION": "abc1234", **env})
        app.testing = True
        return app.test_client()

    return build


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()
