# The operator image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t weir-operator:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq clang libclang-dev >/dev/null
WORKDIR /src
COPY . .
RUN cargo build --release -p weir-operator && cp target/release/weir-operator /weir-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /weir-operator /usr/local/bin/weir-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weir-operator"]
