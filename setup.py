"""Packaging for motorpatch. Runtime dependency ranges are the ones the test suite covers."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="motorpatch",
    version="0.1.0",
    description=(
        "Make synchronous PyMongo code non-blocking inside asyncio apps: "
        "FastAPI, Starlette, aiohttp, Django, Tornado."
    ),
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["motorpatch", "motorpatch.*"]),
    package_data={"motorpatch": ["py.typed"]},
    install_requires=[
        "pymongo>=4.9,<5",  # tested 4.9-4.20; newer 4.x with matching internals: a warning
        "greenlet>=3.0",
        "tornado>=6.0,<7",  # docs/architecture.md#tornado-stays-a-required-dependency
        "wrapt>=2.5",  # handle-based unwrap_object, used by uninstall()
    ],
    extras_require={
        "uvloop": ["uvloop>=0.19"],
        "demo": ["nx-27017>=0.8.1"],  # the embedded server ./dev demo starts
        "test": [
            "pytest>=8",
            "mockupdb>=1.8.1",
            "nx-27017>=0.8.1",
            "uvloop>=0.19",
            "trustme>=1.1",
            "mongoengine>=0.29",
            "hypothesis>=6.100",
            "selenium>=4.20",
            # the pytest plugin's coexistence tests (tests/testing/)
            "pytest-asyncio>=0.24",
            "anyio>=4.4",
            "blockbuster>=1.5.20",
            # framework integration tests (tests/frameworks/)
            "fastapi>=0.115",
            "starlette>=0.40",
            "uvicorn>=0.30",
            "aiohttp>=3.10",
            "httpx>=0.27",
            "httpx2>=2.0",  # Starlette's TestClient prefers it (a DeprecationWarning with httpx)
            "wsproto>=1.2",  # uvicorn's WebSocket protocol in the tests
            "asgiref>=3.8",
            "django>=5.0",
            "django-mongodb-backend>=5.2",
            "gunicorn>=22",
            "quart>=0.19",
            "litestar>=2.8",
            "opentelemetry-sdk>=1.25",
            "opentelemetry-instrumentation-pymongo>=0.46b0",
            "opentelemetry-instrumentation-fastapi>=0.46b0",
            "ddtrace>=2.8",
            "sqlalchemy[asyncio]>=2.0",
            "aiosqlite>=0.20",
        ],
        "testing": ["pytest>=8", "nx-27017>=0.8.1"],
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
        "lint": ["ruff>=0.6", "mypy>=1.10"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: AsyncIO",
        "Typing :: Typed",
    ],
)
