"""What the tests share, none of it a test: the stand-in servers, the one way to start a live process,
and the small helpers. Fixtures stay in the conftest.py files and import from here.

fake_upstream      the one fake OpenAI-compatible upstream, its fault modes picked by the URL's first segment
fake_sglang        a stand-in SGLang engine (OpenAI API, /health, /get_load, /stats, failure modes)
fake_grpc          real gRPC servers on loopback standing in for AIOS and OrgLLM deployments
llama_reference    llama_cpp.server on a GGUF, with a prompt-cache reset, for the differential test
recording_listener a TCP listener that counts the connections it gets (egress tests)
private_services   a Redis and a PostgreSQL of a test's own, to stop and freeze (outage tests)
live_server        starts and stops every process: the gateway, `make run`, workers, the engine, llama
ports              free_port, wait_for_port
plain_http         raw HTTP requests and small JSON probes
websocket_client   a chat-socket client that passes the origin check; a conversation's frames
sse                server-sent events as (id, data)
openai_errors      assert_openai_error: OpenAI's error shape on a reply
chat_requests      a ChatRequest and a party's Principal, for admission in-process
queued_requests    blocks and requests on the fake engine through the queued path
query_cases        the query-language cases both PostgreSQL and SQLite run
"""
