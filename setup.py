"""What pyproject.toml cannot say: the migrations, kept in the top-level alembic/ folder (where
Alembic users look for them), ship inside the package as `memory_service.migrations`, so wheels
and sdists carry them and an installed service migrates its database without a checkout.
Everything else about the build is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(
            include=["memory_service", "memory_service.*"], exclude=["*.__pycache__"]
        ),
        "memory_service.migrations",
        "memory_service.migrations.versions",
    ],
    package_dir={"memory_service.migrations": "alembic"},
)
