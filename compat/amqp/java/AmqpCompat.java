// The RabbitMQ Java client (Debian librabbitmq-client-java 5.0.0) against Tributary: publish
// with confirms, basicConsume with a server-generated tag and manual acks, mandatory returns,
// basicGet with reject/requeue. Prints the RESULT lines of ../lib/drivers.sh.

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.DefaultConsumer;
import com.rabbitmq.client.Envelope;
import com.rabbitmq.client.GetResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

public final class AmqpCompat {
    interface Scenario {
        String run(Connection connection) throws Exception;
    }

    private static boolean failed = false;

    public static void main(String[] args) throws Exception {
        ConnectionFactory factory = new ConnectionFactory();
        factory.setHost("127.0.0.1");
        factory.setPort(Integer.parseInt(System.getenv("AMQP_PORT")));
        factory.setUsername("guest");
        factory.setPassword("guest");
        factory.setConnectionTimeout(5000);
        factory.setAutomaticRecoveryEnabled(false);
        try (Connection connection = factory.newConnection("tributary-compat")) {
            scenario("confirms", connection, AmqpCompat::confirms);
            scenario("consume-ack", connection, AmqpCompat::consumeAck);
            scenario("mandatory-return", connection, AmqpCompat::mandatoryReturn);
            scenario("get-reject-requeue", connection, AmqpCompat::getRejectRequeue);
            scenario("cancel-notify-recover", connection, AmqpCompat::cancelNotifyRecover);
        }
        System.exit(failed ? 1 : 0);
    }

    private static void scenario(String name, Connection connection, Scenario body) {
        long started = System.nanoTime();
        try {
            String detail = body.run(connection);
            System.out.printf("RESULT %s PASS %s (%.2f s)%n", name, detail,
                (System.nanoTime() - started) / 1e9);
        } catch (Throwable error) {
            failed = true;
            error.printStackTrace();
            System.out.printf("RESULT %s FAIL %s%n", name, String.valueOf(error).split("\n")[0]);
        }
    }

    private static void check(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    private static String unique(String prefix) {
        return prefix + "." + UUID.randomUUID().toString().substring(0, 8);
    }

    private static String confirms(Connection connection) throws Exception {
        try (Channel channel = connection.createChannel()) {
            String queue = unique("java.confirm");
            channel.queueDeclare(queue, true, false, true, null);
            channel.confirmSelect();
            AtomicInteger acked = new AtomicInteger();
            channel.addConfirmListener((tag, multiple) -> acked.incrementAndGet(),
                (tag, multiple) -> { throw new IllegalStateException("nack for " + tag); });
            for (int i = 0; i < 100; i++) {
                channel.basicPublish("", queue,
                    new AMQP.BasicProperties.Builder().deliveryMode(2).build(),
                    ("j" + i).getBytes(StandardCharsets.UTF_8));
            }
            channel.waitForConfirmsOrDie(5000);
            check(acked.get() > 0, "no basic.ack arrived");
            long count = channel.messageCount(queue);
            check(count == 100, count + " of 100 confirmed messages in the queue");
            channel.queueDelete(queue);
            return "100 persistent publishes confirmed (" + acked.get() + " ack frames)";
        }
    }

    private static String consumeAck(Connection connection) throws Exception {
        try (Channel channel = connection.createChannel()) {
            String queue = channel.queueDeclare().getQueue();
            check(queue.startsWith("amq.gen-"), "server-named queue " + queue);
            for (int i = 0; i < 50; i++) {
                channel.basicPublish("", queue, null, ("k" + i).getBytes(StandardCharsets.UTF_8));
            }
            List<String> bodies = Collections.synchronizedList(new ArrayList<>());
            CountDownLatch all = new CountDownLatch(50);
            channel.basicQos(7);
            String tag = channel.basicConsume(queue, false, new DefaultConsumer(channel) {
                @Override
                public void handleDelivery(String consumerTag, Envelope envelope,
                        AMQP.BasicProperties properties, byte[] body) throws java.io.IOException {
                    bodies.add(new String(body, StandardCharsets.UTF_8));
                    getChannel().basicAck(envelope.getDeliveryTag(), false);
                    all.countDown();
                }
            });
            check(tag.startsWith("amq.ctag-"), "consumer tag " + tag);
            check(all.await(10, TimeUnit.SECONDS), "only " + bodies.size() + " of 50 delivered");
            for (int i = 0; i < 50; i++) {
                check(bodies.get(i).equals("k" + i), "message " + i + " was " + bodies.get(i));
            }
            check(channel.messageCount(queue) == 0, "messages left after acks");
            channel.basicCancel(tag);
            return "50 delivered in order with prefetch 7, acked; tag " + tag.substring(0, 9) + "...";
        }
    }

    private static String mandatoryReturn(Connection connection) throws Exception {
        try (Channel channel = connection.createChannel()) {
            CountDownLatch returned = new CountDownLatch(1);
            AtomicInteger code = new AtomicInteger();
            channel.addReturnListener(ret -> {
                code.set(ret.getReplyCode());
                returned.countDown();
            });
            channel.basicPublish("amq.direct", unique("nowhere"), true, null,
                "lost".getBytes(StandardCharsets.UTF_8));
            check(returned.await(5, TimeUnit.SECONDS), "no basic.return");
            check(code.get() == 312, "reply code " + code.get());
            return "basic.return 312 for an unroutable mandatory publish";
        }
    }

    private static String cancelNotifyRecover(Connection connection) throws Exception {
        try (Channel channel = connection.createChannel(); Channel admin = connection.createChannel()) {
            String queue = channel.queueDeclare(unique("java.cancel"), false, false, false, null)
                .getQueue();
            channel.basicPublish("", queue, null, "r".getBytes(StandardCharsets.UTF_8));
            CountDownLatch delivered = new CountDownLatch(2);
            CountDownLatch cancelled = new CountDownLatch(1);
            List<Boolean> redelivered = Collections.synchronizedList(new ArrayList<>());
            channel.basicConsume(queue, false, new DefaultConsumer(channel) {
                @Override
                public void handleDelivery(String consumerTag, Envelope envelope,
                        AMQP.BasicProperties properties, byte[] body) {
                    redelivered.add(envelope.isRedeliver());
                    delivered.countDown();
                    if (redelivered.size() == 1) {
                        new Thread(() -> {
                            try {
                                getChannel().basicRecover(true);
                            } catch (java.io.IOException error) {
                                redelivered.add(null);
                            }
                        }).start();
                    }
                }

                @Override
                public void handleCancel(String consumerTag) {
                    cancelled.countDown();
                }
            });
            check(delivered.await(5, TimeUnit.SECONDS), "recover did not redeliver: " + redelivered);
            check(redelivered.get(0) == Boolean.FALSE && redelivered.get(1) == Boolean.TRUE,
                "redelivered flags " + redelivered);
            admin.queueDelete(queue);
            check(cancelled.await(5, TimeUnit.SECONDS), "no handleCancel after the queue was deleted");
            return "basicRecover(requeue) redelivered; handleCancel on queue delete";
        }
    }

    private static String getRejectRequeue(Connection connection) throws Exception {
        try (Channel channel = connection.createChannel()) {
            String queue = channel.queueDeclare(unique("java.get"), false, false, true, null)
                .getQueue();
            channel.basicPublish("", queue, null, "again".getBytes(StandardCharsets.UTF_8));
            GetResponse first = channel.basicGet(queue, false);
            check(first != null && !first.getEnvelope().isRedeliver(), "first get");
            channel.basicReject(first.getEnvelope().getDeliveryTag(), true);
            GetResponse second = channel.basicGet(queue, false);
            check(second != null, "the rejected message was not requeued");
            check(second.getEnvelope().isRedeliver(), "requeued without redelivered");
            check(second.getEnvelope().getDeliveryTag() > first.getEnvelope().getDeliveryTag(),
                "delivery tags not increasing");
            channel.basicAck(second.getEnvelope().getDeliveryTag(), false);
            check(channel.basicGet(queue, false) == null, "acked message came back");
            return "reject(requeue) -> redelivered, ack -> gone";
        }
    }
}
