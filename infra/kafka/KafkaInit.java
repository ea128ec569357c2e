// Waits until every broker of the cluster has joined, then grants each service's principal
// what acls.txt lists. Run once per `docker compose up` by the kafka-init service, as the admin
// principal; granting an ACL that exists already changes nothing, so it may run any number of times.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public final class KafkaInit {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, System.getenv("KAFKA_BOOTSTRAP_SERVERS"));
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        config.put("security.protocol", "SASL_PLAINTEXT");
        config.put("sasl.mechanism", "SCRAM-SHA-512");
        config.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + System.getenv("KAFKA_ADMIN_USER") + "\" password=\"" + System.getenv("KAFKA_ADMIN_PASSWORD") + "\";");
        int brokers = Integer.parseInt(System.getenv().getOrDefault("KAFKA_EXPECTED_BROKERS", "1"));
        List<AclBinding> acls = read(Path.of(args.length > 0 ? args[0] : "/opt/kafka/acls.txt"));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(300);
        try (Admin admin = Admin.create(config)) {
            while (true) {
                try {
                    int joined = admin.describeCluster().nodes().get(10, TimeUnit.SECONDS).size();
                    if (joined >= brokers) {
                        admin.createAcls(acls).all().get(30, TimeUnit.SECONDS);
                        System.out.printf("kafka-init: %d brokers, %d ACLs granted%n", joined, acls.size());
                        return;
                    }
                    System.out.printf("kafka-init: %d of %d brokers joined%n", joined, brokers);
                } catch (Exception e) {
                    System.out.println("kafka-init: cluster not ready: " + e.getMessage());
                }
                if (System.nanoTime() > deadline) {
                    System.err.println("kafka-init: gave up after 300 s");
                    System.exit(1);
                }
                Thread.sleep(1000);
            }
        }
    }

    /** Lines of "principal operation resource-type name", # comments; name "*" means every one. */
    static List<AclBinding> read(Path file) throws Exception {
        List<AclBinding> acls = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            String text = line.replaceAll("#.*", "").trim();
            if (text.isEmpty()) continue;
            String[] f = text.split("\\s+");
            ResourcePattern resource = new ResourcePattern(ResourceType.fromString(f[2]), f[3], PatternType.LITERAL);
            acls.add(new AclBinding(resource, new AccessControlEntry(
                    "User:" + f[0], "*", AclOperation.fromString(f[1]), AclPermissionType.ALLOW)));
        }
        return acls;
    }
}
