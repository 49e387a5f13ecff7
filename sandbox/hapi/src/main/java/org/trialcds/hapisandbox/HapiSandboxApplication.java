package org.trialcds.hapisandbox;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import java.util.Properties;
import javax.sql.DataSource;
import org.apache.commons.dbcp2.BasicDataSource;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.BeanPostProcessor;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.data.jpa.JpaRepositoriesAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration;
import org.springframework.boot.autoconfigure.jdbc.DataSourceAutoConfiguration;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * A minimal HAPI FHIR JPA server for FHIR R4: an in-memory H2 database, the JPA resource providers of every
 * R4 resource type under {@code /fhir}, database-backed paging ({@code _getpages} next links), and no reuse
 * of cached search results (every search runs afresh, so tests see their own writes at once).
 *
 * <p>Settings (application.properties, or {@code --name=value} on the command line):
 * {@code server.port} (8090), {@code server.address} (127.0.0.1), {@code sandbox.default-page-size} (20),
 * {@code sandbox.max-page-size} (100: a larger {@code _count} is capped to this),
 * {@code sandbox.bulk-export-enabled} (true: FHIR Bulk Data {@code $export} at system, Patient and Group level),
 * {@code sandbox.batch-maintenance-millis} (5000: how often batch2 jobs, such as an export, move on).
 */
@SpringBootApplication(
        // HAPI configures its own DataSource use, Hibernate and scheduler: Spring Boot's auto-configuration
        // of these would add a second, unused set.
        exclude = {
            DataSourceAutoConfiguration.class,
            HibernateJpaAutoConfiguration.class,
            JpaRepositoriesAutoConfiguration.class,
            ElasticsearchClientAutoConfiguration.class,
            ElasticsearchRestClientAutoConfiguration.class,
            ThymeleafAutoConfiguration.class,
            // HAPI runs its own schema setup and its own Quartz scheduler.
            FlywayAutoConfiguration.class,
            QuartzAutoConfiguration.class
        })
@Import({
    ThreadPoolFactoryConfig.class,
    JpaR4Config.class,
    HapiJpaConfig.class,
    JpaBatch2Config.class,
    Batch2JobsConfig.class,
    // The in-memory message broker that HAPI's batch framework (batch2) needs; no subscriptions here.
    SubscriptionChannelConfig.class
})
public class HapiSandboxApplication {

    public static void main(String[] args) {
        SpringApplication.run(HapiSandboxApplication.class, args);
    }

    /** How the JPA server stores and searches. */
    @Bean
    public JpaStorageSettings jpaStorageSettings() {
        JpaStorageSettings settings = new JpaStorageSettings();
        // Never answer a search from the results of an earlier identical search: tests write, then read.
        settings.setReuseCachedSearchResultsForMillis(null);
        // Client-assigned ids of any form ("pt-01", "123"); server-assigned ids are UUIDs.
        settings.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ANY);
        settings.setResourceServerIdStrategy(JpaStorageSettings.IdStrategyEnum.UUID);
        // Conditional deletes may match several resources (test clean-up).
        settings.setAllowMultipleDelete(true);
        // Synthetic data refer to practitioners and organisations they do not contain.
        settings.setEnforceReferentialIntegrityOnWrite(false);
        settings.setEnforceReferentialIntegrityOnDelete(false);
        settings.setExpungeEnabled(true);
        settings.setDeleteExpungeEnabled(true);
        // No setFetchSizeDefaultMaximum: it caps only synchronous searches (those HAPI makes itself), and
        // capped there a bulk export job, which reads up to 800 resources at a time by _id, fails with
        // "HAPI-0464: Attempt to request all resources from an asynchronous search result". A client's _count
        // is capped by the paging provider (sandbox.max-page-size) below.
        // Bulk Data $export: run export jobs here, and never answer a kick-off with the files of an earlier
        // export with the same parameters (HAPI's default reuses them, so an export after a load would miss
        // what was just loaded). The files (Binary resources in H2) are kept for two hours.
        settings.setEnableTaskBulkExportJobExecution(true);
        settings.setEnableBulkExportJobReuse(false);
        settings.setBulkExportFileRetentionPeriodHours(2);
        // A job's next step starts as soon as the one before is done, not at the next maintenance pass
        // (once a minute): an export of a few patients otherwise takes several minutes of waiting.
        settings.setJobFastTrackingEnabled(true);
        return settings;
    }

    /**
     * batch2's maintenance pass, which moves a job from step to step (a bulk export: queued, ids, files,
     * report), every {@code sandbox.batch-maintenance-millis} (5 s) instead of HAPI's once a minute: an export
     * of a few patients took 2.5–3 minutes, most of it waiting for the next pass. Set before HAPI schedules
     * the pass (that happens once every bean is made).
     */
    @Bean
    public static BeanPostProcessor batchMaintenanceFrequency(
            @Value("${sandbox.batch-maintenance-millis:5000}") long millis) {
        return new BeanPostProcessor() {
            @Override
            public Object postProcessAfterInitialization(Object bean, String beanName) {
                if (bean instanceof JobMaintenanceServiceImpl maintenance) {
                    maintenance.setScheduledJobFrequencyMillis(millis);
                }
                return bean;
            }
        };
    }

    @Bean
    public PartitionSettings partitionSettings() {
        return new PartitionSettings();
    }

    @Bean
    public DataSource dataSource(@Value("${sandbox.jdbc-url:jdbc:h2:mem:hapi;DB_CLOSE_DELAY=-1}") String url) {
        BasicDataSource dataSource = new BasicDataSource();
        dataSource.setDriverClassName("org.h2.Driver");
        dataSource.setUrl(url);
        dataSource.setUsername("sa");
        dataSource.setPassword("");
        dataSource.setMaxTotal(20);
        return dataSource;
    }

    @Primary
    @Bean
    public LocalContainerEntityManagerFactoryBean entityManagerFactory(
            DataSource dataSource,
            ConfigurableListableBeanFactory beanFactory,
            FhirContext fhirContext,
            JpaStorageSettings storageSettings) {
        LocalContainerEntityManagerFactoryBean factory =
                HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
        factory.setPersistenceUnitName("HAPI_PU");
        factory.setDataSource(dataSource);
        Properties jpa = new Properties();
        jpa.put("hibernate.dialect", HapiFhirH2Dialect.class.getName());
        jpa.put("hibernate.hbm2ddl.auto", "update");
        jpa.put("hibernate.format_sql", "false");
        jpa.put("hibernate.show_sql", "false");
        jpa.put("hibernate.jdbc.batch_size", "20");
        jpa.put("hibernate.cache.use_query_cache", "false");
        jpa.put("hibernate.cache.use_second_level_cache", "false");
        jpa.put("hibernate.search.enabled", "false");
        factory.setJpaProperties(jpa);
        return factory;
    }

    @Primary
    @Bean
    public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
        return new JpaTransactionManager(entityManagerFactory);
    }

    @Bean
    public IBinaryStorageSvc binaryStorageSvc() {
        return new DatabaseBinaryContentStorageSvcImpl();
    }

    /**
     * The FHIR REST endpoint: every R4 resource provider, the system provider, Bulk Data export, paging to the
     * database.
     */
    @Bean
    public RestfulServer restfulServer(
            IFhirSystemDao<?, ?> systemDao,
            ResourceProviderFactory resourceProviderFactory,
            IJpaSystemProvider systemProvider,
            JpaStorageSettings storageSettings,
            ISearchParamRegistry searchParamRegistry,
            IValidationSupport validationSupport,
            DatabaseBackedPagingProvider pagingProvider,
            BulkDataExportProvider bulkDataExportProvider,
            @Value("${sandbox.default-page-size:20}") int defaultPageSize,
            @Value("${sandbox.max-page-size:100}") int maxPageSize,
            @Value("${sandbox.bulk-export-enabled:true}") boolean bulkExportEnabled) {
        RestfulServer server = new RestfulServer(systemDao.getContext());
        server.registerProviders(resourceProviderFactory.createProviders());
        server.registerProvider(systemProvider);
        if (bulkExportEnabled) {
            // $export, $export-poll-status (the kick-off's Content-Location); the job itself runs in batch2.
            server.registerProvider(bulkDataExportProvider);
        }
        pagingProvider.setDefaultPageSize(defaultPageSize);
        pagingProvider.setMaximumPageSize(maxPageSize);
        server.setPagingProvider(pagingProvider);
        server.setDefaultResponseEncoding(ca.uhn.fhir.rest.api.EncodingEnum.JSON);
        JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
                server, systemDao, storageSettings, searchParamRegistry, validationSupport);
        capabilities.setImplementationDescription("trial-cds HAPI FHIR sandbox (R4, H2 in memory)");
        server.setServerConformanceProvider(capabilities);
        return server;
    }

    @Bean
    public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
        ServletRegistrationBean<RestfulServer> registration =
                new ServletRegistrationBean<>(restfulServer, "/fhir/*");
        registration.setLoadOnStartup(1);
        return registration;
    }
}
