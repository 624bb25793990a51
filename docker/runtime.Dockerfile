# The job image: `weir` (coordinator, worker, check) and the example's input data.
# Build from the repository root with the shared data as a named context:
#   docker build -f docker/runtime.Dockerfile --build-context data=../shared/data -t weir:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq clang libclang-dev >/dev/null
WORKDIR /src
COPY . .
RUN cargo build --release -p weir-runtime && cp target/release/weir /weir

# distroless: no shell, no package manager; uid 65532 (`nonroot`), as the operator's pods run.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /weir /usr/local/bin/weir
COPY --from=data online_retail_uci_2010-2011.csv.gz /opt/weir/data/online_retail_uci_2010-2011.csv.gz
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weir"]
