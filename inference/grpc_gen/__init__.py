"""Stubs generated from inference/protos by `make proto`; do not edit."""
