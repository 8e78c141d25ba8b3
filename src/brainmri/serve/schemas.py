"""The JSON bodies of the API, as pydantic models (they make the OpenAPI spec)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Error(BaseModel):
    """Every refusal: one line that says what was wrong and how to fix it."""

    detail: str


class ModelRef(BaseModel):
    name: str = Field(description="the bundle folder's name")
    method: str
    version: str = Field(description="digest of the model's files: equal versions, equal weights")


class Heatmap(BaseModel):
    method: str = Field(description="the attribution method (gradcam for a network on the images, else occlusion)")
    image_png: str = Field(description="base64 PNG: the image as the model sees it (cropped, resized)")
    overlay_png: str = Field(description="base64 PNG of the same size: the map in colour over the image, opaque")


class Prediction(BaseModel):
    filename: str | None
    predicted: str
    probabilities: dict[str, float] = Field(description="class -> probability, in the model's class order")
    heatmap: Heatmap | None


class Predictions(BaseModel):
    model: ModelRef
    predictions: list[Prediction] = Field(description="one per file, in the order sent")
    disclaimer: str


class Health(BaseModel):
    status: str
    model: str
    version: str
    busy: int = Field(description="requests being computed or waiting")
    capacity: int = Field(description="requests taken at once (workers + queue); more are answered 503")


class ModelInfo(BaseModel):
    name: str
    version: str
    method: dict[str, Any]
    classes: list[str]
    preprocess: dict[str, Any] | None
    input_size: list[int] | None
    validation: dict[str, Any] | None
    training_data: dict[str, Any] | None
    created: str | None
    explanation: str | None = Field(description="attribution method of heatmap=true, or null when there is none")
    disclaimer: str
    limits: dict[str, float]
