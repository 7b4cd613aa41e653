"""/api/v2/auth: tokens, refresh, the caller, logout."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException, TooManyRequestsException
from litestar.params import JSONBody

from aiplatform.api.context import event_metadata
from aiplatform.api.envelope import Envelope, ok
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import Principal, provide_principal
from aiplatform.api.services import Services, provide_services
from aiplatform.api.users import UserOut, known_user
from aiplatform.auth.accounts import RefreshRefusedError
from aiplatform.auth.passwords import verify_password_off_loop
from aiplatform.auth.permissions import AUTHENTICATED, PUBLIC
from aiplatform.auth.tokens import ACCESS_TOKEN_TTL_S, issue_access_token
from aiplatform.commands import CommandContext
from aiplatform.domain import users as domain

_WRONG_CREDENTIALS = "wrong username or password"


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = ACCESS_TOKEN_TTL_S


async def _token_request(request: Request[Any, Any, State]) -> tuple[TokenRequest, bool]:
    """JSON, or the OAuth2 password form the OpenAPI page's Authorize button posts."""
    if request.content_type[0] == "application/x-www-form-urlencoded":
        form = await request.form()
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise RequestError("the form needs `username` and `password`", field="username")
        return TokenRequest(username=username, password=password), True
    try:
        return msgspec.json.decode(await request.body(), type=TokenRequest), False
    except msgspec.DecodeError:
        raise RequestError("the body must be JSON: {username, password}") from None
    except msgspec.ValidationError as error:
        raise RequestError(str(error), status_code=422) from None


def _client_ip(request: Request[Any, Any, State]) -> str:
    return request.client.host if request.client else "unknown"


@post(
    "/token",
    operation_id="CreateToken",
    summary="Log in: trade a username and password for tokens",
    description="JSON `{username, password}` answers in the envelope; the OAuth2 password form "
    "answers with the bare OAuth2 token response, as OAuth2 clients expect.",
    status_code=200,
    opt={"permission": PUBLIC},
)
async def create_token(
    request: Request[Any, Any, State], services: NamedDependency[Services]
) -> Response[Any]:
    credentials, oauth2_form = await _token_request(request)
    client_ip = _client_ip(request)
    retry_after = await services.login_limiter.retry_after(credentials.username, client_ip)
    if retry_after is not None:
        raise TooManyRequestsException(
            f"too many failed logins; try again in {retry_after} s",
            extra={"retry_after": retry_after},
        )
    account = await services.accounts.by_username(credentials.username)
    # The hash is checked even for an unknown username: the same work, the same answer.
    password_ok = await verify_password_off_loop(
        account.password_hash if account else None, credentials.password
    )
    if account is None or not password_ok or not account.active:
        await services.login_limiter.record_failure(credentials.username, client_ip)
        message = (
            "this account is deactivated"
            if account is not None and password_ok
            else _WRONG_CREDENTIALS
        )
        raise NotAuthorizedException(message)
    await services.login_limiter.record_success(credentials.username, client_ip)
    session_id, refresh_token = await services.accounts.start_session(account.user_id)
    await services.commands.record(
        domain.stream_id(account.user_id),
        [domain.UserLoggedIn(user_id=account.user_id, session_id=session_id)],
        CommandContext(metadata=event_metadata(request, actor=account.user_id)),
    )
    pair = TokenPair(
        access_token=issue_access_token(
            services.settings.require_secret_key(), account.user_id, session_id
        ),
        refresh_token=refresh_token,
    )
    return Response(pair if oauth2_form else ok(pair))


@post(
    "/refresh",
    operation_id="RefreshToken",
    summary="Trade a refresh token for new tokens (the old one stops working)",
    status_code=200,
    opt={"permission": PUBLIC},
)
async def refresh_token(
    services: NamedDependency[Services], data: JSONBody[RefreshRequest]
) -> Envelope[TokenPair]:
    try:
        user_id, session_id, token = await services.accounts.rotate(data.refresh_token)
    except RefreshRefusedError as error:
        session_id_of_reuse = await services.accounts.session_of(data.refresh_token)
        if session_id_of_reuse is not None:
            await services.standing.sessions_ended([session_id_of_reuse])
        raise NotAuthorizedException(str(error)) from None
    access = issue_access_token(services.settings.require_secret_key(), user_id, session_id)
    return ok(TokenPair(access_token=access, refresh_token=token))


@get("/me", operation_id="GetMe", summary="The caller", opt={"permission": AUTHENTICATED})
async def me(
    services: NamedDependency[Services], principal: NamedDependency[Principal]
) -> Envelope[UserOut]:
    user = await known_user(services, uuid.UUID(principal.user_id))
    if user is None:
        raise NotAuthorizedException("this account no longer exists")
    return ok(user)


@post(
    "/logout",
    operation_id="Logout",
    summary="End this session: its access and refresh tokens stop working",
    status_code=200,
    opt={"permission": AUTHENTICATED},
)
async def logout(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
) -> Envelope[dict[str, bool]]:
    await services.accounts.revoke_session(principal.session_id, "logged out")
    await services.standing.sessions_ended([principal.session_id])
    await services.commands.record(
        domain.stream_id(principal.user_id),
        [domain.UserLoggedOut(user_id=principal.user_id, session_id=principal.session_id)],
        CommandContext(metadata=event_metadata(request)),
    )
    return ok({"logged_out": True})


def auth_router() -> Router:
    return Router(
        path="/auth",
        route_handlers=[create_token, refresh_token, me, logout],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["auth"],
    )
