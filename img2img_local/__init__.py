"""Offline tooling (never shipped to Lambda): Bedrock engine, local stack, Lambda SQS emulation, CLI."""
