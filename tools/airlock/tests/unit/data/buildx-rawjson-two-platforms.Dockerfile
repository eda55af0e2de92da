FROM 127.0.0.1:5000/airlock/debian:bookworm AS build
RUN echo building; seq 1 3
FROM scratch
COPY --from=build /etc/os-release /os-release
COPY a.txt /a.txt
