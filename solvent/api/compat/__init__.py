"""Compatibility layers: Stability REST (v1, v2beta), AUTOMATIC1111 `/sdapi/v1`, OpenAI Images.

Each translates its wire format into a `GenerationIn`, submits it through the same `admit` as the
native API (same queue, limits, credits and history), waits for the result, and renders the
answer — or the error — in its own shape. No business logic lives here.
"""
