"""pika BlockingConnection over AMQPS (`amqp.tls_port`): PLAIN as a broker user, EXTERNAL with a
client certificate whose CN is that user, EXTERNAL with a certificate of an unknown CN refused,
and a plaintext client on the TLS port refused. The broker's certificate is verified against the
run's CA with host name checking (it names 127.0.0.1).

Environment (set by ../lib/broker.sh): AMQPS_PORT, TLS_DIR (ca.pem, client-<cn>.pem and keys),
TLS_USER and TLS_PASSWORD (a stored user with every permission on `/`), TLS_UNKNOWN_CN (a CN
signed by the same CA that is no broker user).
"""

import os
import ssl

import pika
import pika.exceptions

from compat import check, finish, scenario, unique

PORT = int(os.environ["AMQPS_PORT"])
TLS_DIR = os.environ["TLS_DIR"]
USER = os.environ["TLS_USER"]
PASSWORD = os.environ["TLS_PASSWORD"]
UNKNOWN = os.environ["TLS_UNKNOWN_CN"]


def tls_options(cn=None):
    context = ssl.create_default_context(cafile=os.path.join(TLS_DIR, "ca.pem"))
    if cn is not None:
        context.load_cert_chain(
            os.path.join(TLS_DIR, f"client-{cn}.pem"), os.path.join(TLS_DIR, f"client-{cn}-key.pem")
        )
    return pika.SSLOptions(context, server_hostname="127.0.0.1")


def params(credentials, cn=None, port=PORT, tls=True):
    return pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        credentials=credentials,
        ssl_options=tls_options(cn) if tls else None,
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=10,
    )


def round_trip(parameters):
    """Declares a queue, publishes 10 messages with confirms and consumes them back."""
    with pika.BlockingConnection(parameters) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = unique("pika.tls")
        channel.queue_declare(queue, auto_delete=True)
        bodies = [f"tls-{i}".encode() for i in range(10)]
        for body in bodies:
            channel.basic_publish("", queue, body, mandatory=True)
        received = []
        for method, _, body in channel.consume(queue, inactivity_timeout=5):
            check(method is not None, f"only {len(received)} of 10 arrived")
            received.append(body)
            channel.basic_ack(method.delivery_tag)
            if len(received) == len(bodies):
                break
        channel.cancel()
        check(received == bodies, f"received {received}")
        return "10 confirmed, consumed and acked"


def amqps_plain():
    return f"{USER} (PLAIN): " + round_trip(params(pika.PlainCredentials(USER, PASSWORD)))


def amqps_external():
    return f"CN={USER} (EXTERNAL): " + round_trip(
        params(pika.credentials.ExternalCredentials(), cn=USER)
    )


def external_unknown_cn():
    try:
        pika.BlockingConnection(params(pika.credentials.ExternalCredentials(), cn=UNKNOWN)).close()
    except pika.exceptions.ProbableAuthenticationError as err:
        # pika's name for a connection.close during the handshake; the reply code says why.
        check("ACCESS_REFUSED" in str(err), f"refused, but not as ACCESS_REFUSED: {err}")
        return f"CN={UNKNOWN} refused ({err})"[:200]
    raise AssertionError(f"EXTERNAL as CN={UNKNOWN} (no such user) logged in")


def plaintext_on_tls():
    try:
        pika.BlockingConnection(params(pika.PlainCredentials(USER, PASSWORD), tls=False)).close()
    except pika.exceptions.AMQPConnectionError as err:
        return f"plaintext AMQP on the TLS port refused ({type(err).__name__})"
    raise AssertionError("a plaintext connection was served on the TLS port")


scenario("amqps-plain", amqps_plain)
scenario("amqps-external", amqps_external)
scenario("external-unknown-cn", external_unknown_cn)
scenario("plaintext-on-tls", plaintext_on_tls)
finish()
