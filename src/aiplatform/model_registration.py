"""Registering a model version: the ModelRegistered event and the `model_index` row that finds
its model line by id (migration 0003), in one transaction. Used by uploads and training jobs."""

from __future__ import annotations

import uuid

import asyncpg

from aiplatform.aggregates import MODELS
from aiplatform.commands import CommandContext, CommandHandler, CommandResult
from aiplatform.domain import models
from aiplatform.eventstore.store import AppendResult


async def register_model(
    handler: CommandHandler, command: models.RegisterModel, context: CommandContext
) -> CommandResult[models.ModelLine]:
    async def index(connection: asyncpg.Connection, _: AppendResult) -> None:
        await connection.execute(
            "INSERT INTO model_index (model_id, project_id, name) VALUES ($1, $2, $3)",
            uuid.UUID(command.model_id),
            uuid.UUID(command.project_id),
            command.name,
        )

    line = models.line_of(command.project_id, command.name)
    return await handler.handle(MODELS, line, command, context, in_transaction=index)
