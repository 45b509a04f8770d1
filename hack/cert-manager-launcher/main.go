// Command controller runs cert-manager's control loops, in or out of a cluster: a launcher
// over the packages of cert-manager's root module, built by hack/build-cert-manager.sh (which
// says why it exists).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	cliflag "k8s.io/component-base/cli/flag"
	logsapi "k8s.io/component-base/logs/api/v1"

	"github.com/cert-manager/cert-manager/internal/controller/feature"
	"github.com/cert-manager/cert-manager/pkg/controller"
	challenges "github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	orders "github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	shimgateways "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/gateways"
	shimingresses "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	cracme "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	crvault "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/vault"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	certmetrics "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	csracme "github.com/cert-manager/cert-manager/pkg/controller/certificatesigningrequests/acme"
	csrca "github.com/cert-manager/cert-manager/pkg/controller/certificatesigningrequests/ca"
	csrselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificatesigningrequests/selfsigned"
	csrvault "github.com/cert-manager/cert-manager/pkg/controller/certificatesigningrequests/vault"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	dnsutil "github.com/cert-manager/cert-manager/pkg/issuer/acme/dns/util"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"

	// Issuer kinds register themselves with the issuers controllers when imported.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/vault"
)

// The controllers upstream enables by default, less the Venafi ones.
var defaultControllers = []string{
	issuers.ControllerName, clusterissuers.ControllerName, certmetrics.ControllerName,
	shimingresses.ControllerName, orders.ControllerName, challenges.ControllerName,
	cracme.CRControllerName, crapprover.ControllerName, crca.CRControllerName,
	crselfsigned.CRControllerName, crvault.CRControllerName,
	trigger.ControllerName, issuing.ControllerName, keymanager.ControllerName,
	requestmanager.ControllerName, readiness.ControllerName, revisionmanager.ControllerName,
}

// Controllers for Kubernetes CertificateSigningRequests, off unless named or enabled by the
// ExperimentalCertificateSigningRequestControllers feature gate.
var csrControllers = []string{
	csracme.CSRControllerName, csrca.CSRControllerName, csrselfsigned.CSRControllerName, csrvault.CSRControllerName,
}

// Controllers that watch cluster-scoped resources: not run when --namespace is set.
var clusterScoped = append([]string{clusterissuers.ControllerName}, csrControllers...)

var allControllers = slices.Concat(defaultControllers, []string{shimgateways.ControllerName}, csrControllers)

// Names upstream knows that this build leaves out.
var notBuilt = []string{"certificaterequests-issuer-venafi", "certificatesigningrequests-issuer-venafi"}

type options struct {
	kubeconfig, master        string
	qps                       float32
	burst                     int
	namespace                 string
	clusterResourceNamespace  string
	leaderElect               bool
	leaseNamespace            string
	leaseDuration             time.Duration
	renewDeadline             time.Duration
	retryPeriod               time.Duration
	controllers               []string
	ownerRef                  bool
	copiedAnnotationPrefixes  []string
	clusterIssuerAmbientCreds bool
	issuerAmbientCreds        bool
	workers                   int
	maxChallenges             int
	minBackoff, maxBackoff    time.Duration
	ingressShim               controller.IngressShimOptions
	solverImage               string
	solverRequestCPU          string
	solverRequestMemory       string
	solverLimitsCPU           string
	solverLimitsMemory        string
	solverRunAsNonRoot        bool
	solverNameservers         []string
	dns01Nameservers          []string
	dns01NameserversOnly      bool
	dns01RetryPeriod          time.Duration
	gatewayAPI                bool
	featureGates              map[string]bool
	metricsAddress            string
	healthzAddress            string
	healthzTimeout            time.Duration
	logging                   *logsapi.LoggingConfiguration
}

func main() {
	logf.InitLogs()
	err := run(os.Args[1:])
	logf.FlushLogs()
	if err != nil && !errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	o := &options{logging: logsapi.NewLoggingConfiguration()}
	fs := pflag.NewFlagSet("controller", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: controller [flags]\n\n"+
			"cert-manager %s control loops: issues and renews the certificates that Certificate and\n"+
			"CertificateRequest resources ask for, through the API server named by --kubeconfig or --master.\n"+
			"Built without the Venafi issuer.\n\nFlags:\n%s", util.AppVersion, fs.FlagUsages())
	}
	addFlags(fs, o)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(o.featureGates); err != nil {
		return fmt.Errorf("--feature-gates: %w", err)
	}
	if err := logsapi.ValidateAndApply(o.logging, nil); err != nil {
		return fmt.Errorf("logging flags: %w", err)
	}
	for _, name := range o.controllers {
		name = strings.TrimPrefix(name, "-")
		switch {
		case name == "*" || slices.Contains(allControllers, name):
		case slices.Contains(notBuilt, name):
			return fmt.Errorf("--controllers: %s is not built in this binary", name)
		default:
			return fmt.Errorf("--controllers: unknown controller %q (known: %s)", name, strings.Join(allControllers, ", "))
		}
	}
	if o.leaderElect && o.renewDeadline >= o.leaseDuration {
		return errors.New("--leader-election-renew-deadline must be shorter than --leader-election-lease-duration")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, o)
}

func addFlags(fs *pflag.FlagSet, o *options) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; needed when running out of cluster.")
	fs.StringVar(&o.master, "master", "", "Address of the API server, overriding the kubeconfig's.")
	fs.Float32Var(&o.qps, "kube-api-qps", 20, "Most queries per second sent to the API server (when it has no API Priority and Fairness).")
	fs.IntVar(&o.burst, "kube-api-burst", 50, "Most queries in a burst sent to the API server.")
	fs.StringVar(&o.namespace, "namespace", "", "Watch only this namespace; the cluster-scoped controllers ("+strings.Join(clusterScoped, ", ")+") are then not run. Empty: all namespaces.")
	fs.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", "kube-system", "Namespace holding the Secrets that ClusterIssuers refer to (a CA ClusterIssuer's spec.ca.secretName is read from here).")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "Hold a Lease while running the control loops, so that one instance works at a time. Set false for a single instance.")
	fs.StringVar(&o.leaseNamespace, "leader-election-namespace", "kube-system", "Namespace of the leader election Lease (cert-manager-controller).")
	fs.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 60*time.Second, "How long a Lease holds without renewal.")
	fs.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 40*time.Second, "How long the leader keeps trying to renew before it gives up.")
	fs.DurationVar(&o.retryPeriod, "leader-election-retry-period", 15*time.Second, "Time between tries to take or renew the Lease.")
	fs.StringSliceVar(&o.controllers, "controllers", []string{"*"}, "Controllers to run, comma-separated: '*' is every on-by-default controller, a name adds that controller, "+
		"'-name' leaves it out (e.g. '*,-ingress-shim').\nOn by default: "+strings.Join(defaultControllers, ", ")+
		".\nAll: "+strings.Join(allControllers, ", ")+".")
	fs.BoolVar(&o.ownerRef, "enable-certificate-owner-ref", false, "Make each Certificate an owner of the Secret it writes, so that deleting the Certificate deletes the Secret.")
	fs.StringSliceVar(&o.copiedAnnotationPrefixes, "copied-annotation-prefixes", []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
		"Annotation key prefixes copied from a Certificate to its CertificateRequests and Orders; '-prefix' leaves those out.")
	fs.BoolVar(&o.clusterIssuerAmbientCreds, "cluster-issuer-ambient-credentials", true, "Let ClusterIssuers use credentials from the environment (cloud metadata, files) that the resource does not name.")
	fs.BoolVar(&o.issuerAmbientCreds, "issuer-ambient-credentials", false, "Let Issuers use credentials from the environment that the resource does not name.")
	fs.IntVar(&o.workers, "concurrent-workers", 5, "Workers per controller.")
	fs.IntVar(&o.maxChallenges, "max-concurrent-challenges", 60, "Most ACME challenges processed at once.")
	fs.DurationVar(&o.minBackoff, "certificate-request-minimum-backoff-duration", time.Hour, "Wait after a failed issuance before the first retry; it doubles on each failure.")
	fs.DurationVar(&o.maxBackoff, "certificate-request-maximum-backoff-duration", 32*time.Hour, "Longest wait between retries of a failing issuance.")
	fs.StringVar(&o.ingressShim.DefaultIssuerName, "default-issuer-name", "", "ingress-shim: issuer used when an Ingress names none.")
	fs.StringVar(&o.ingressShim.DefaultIssuerKind, "default-issuer-kind", "Issuer", "ingress-shim: kind of that issuer.")
	fs.StringVar(&o.ingressShim.DefaultIssuerGroup, "default-issuer-group", "cert-manager.io", "ingress-shim: API group of that issuer.")
	fs.StringSliceVar(&o.ingressShim.DefaultAutoCertificateAnnotations, "auto-certificate-annotations", []string{"kubernetes.io/tls-acme"}, "ingress-shim: annotations that ask for a certificate.")
	fs.StringSliceVar(&o.ingressShim.ExtraCertificateAnnotations, "extra-certificate-annotations", nil, "ingress-shim: annotations added to the Certificates it makes.")
	fs.StringVar(&o.solverImage, "acme-http01-solver-image", "quay.io/jetstack/cert-manager-acmesolver:"+util.AppVersion, "Image of the pods that answer ACME HTTP-01 challenges.")
	fs.StringVar(&o.solverRequestCPU, "acme-http01-solver-resource-request-cpu", "10m", "CPU request of those pods.")
	fs.StringVar(&o.solverRequestMemory, "acme-http01-solver-resource-request-memory", "64Mi", "Memory request of those pods.")
	fs.StringVar(&o.solverLimitsCPU, "acme-http01-solver-resource-limits-cpu", "100m", "CPU limit of those pods.")
	fs.StringVar(&o.solverLimitsMemory, "acme-http01-solver-resource-limits-memory", "64Mi", "Memory limit of those pods.")
	fs.BoolVar(&o.solverRunAsNonRoot, "acme-http01-solver-run-as-non-root", true, "Run those pods as a non-root user.")
	fs.StringSliceVar(&o.solverNameservers, "acme-http01-solver-nameservers", nil, "host:port resolvers for ACME HTTP-01 self checks.")
	fs.StringSliceVar(&o.dns01Nameservers, "dns01-recursive-nameservers", nil, "host:port or https:// (DoH) resolvers for ACME DNS-01 self checks.")
	fs.BoolVar(&o.dns01NameserversOnly, "dns01-recursive-nameservers-only", false, "Ask only those resolvers, never the authoritative servers.")
	fs.DurationVar(&o.dns01RetryPeriod, "dns01-check-retry-period", 10*time.Second, "Time between ACME propagation checks.")
	fs.BoolVar(&o.gatewayAPI, "enable-gateway-api", false, "Run the Gateway API certificate shim (needs the Gateway API CRDs).")
	fs.Var(cliflag.NewMapStringBool(&o.featureGates), "feature-gates", "key=value pairs of feature gates. Known:\n"+strings.Join(utilfeature.DefaultFeatureGate.KnownFeatures(), "\n"))
	fs.StringVar(&o.metricsAddress, "metrics-listen-address", "0.0.0.0:9402", "host:port of the Prometheus metrics endpoint; '' or '0' turns it off, port 0 picks a free port.")
	fs.StringVar(&o.healthzAddress, "internal-healthz-listen-address", "0.0.0.0:9403", "host:port of the /livez endpoint; '' or '0' turns it off, port 0 picks a free port.")
	fs.DurationVar(&o.healthzTimeout, "internal-healthz-leader-election-timeout", 20*time.Second, "How long after its Lease expires a leader still counts as live.")
	logf.AddFlags(o.logging, fs)
}

// enabledControllers turns --controllers into the set to run.
func enabledControllers(o *options) sets.Set[string] {
	enabled, disabled := sets.New[string](), sets.New[string]()
	for _, name := range o.controllers {
		switch {
		case name == "*":
			enabled.Insert(defaultControllers...)
		case strings.HasPrefix(name, "-"):
			disabled.Insert(strings.TrimPrefix(name, "-"))
		default:
			enabled.Insert(name)
		}
	}
	if enabled.Len() == 0 && disabled.Len() > 0 {
		enabled.Insert(defaultControllers...)
	}
	if utilfeature.DefaultFeatureGate.Enabled(feature.ExperimentalCertificateSigningRequestControllers) {
		enabled.Insert(csrControllers...)
	}
	if gatewayAPI(o) {
		enabled.Insert(shimgateways.ControllerName)
	}
	if o.namespace != "" {
		enabled.Delete(clusterScoped...)
	}
	return enabled.Difference(disabled)
}

func gatewayAPI(o *options) bool {
	return o.gatewayAPI && utilfeature.DefaultFeatureGate.Enabled(feature.ExperimentalGatewayAPISupport)
}

func serve(rootCtx context.Context, o *options) error {
	log := logf.FromContext(rootCtx, "controller")
	g, ctx := errgroup.WithContext(rootCtx)

	factory, err := contextFactory(ctx, o)
	if err != nil {
		return err
	}
	base, err := factory.Build()
	if err != nil {
		return err
	}
	enabled := enabledControllers(o)
	log.Info("enabled controllers", "controllers", sets.List(enabled))

	listen := func(what, addr string) (net.Listener, error) {
		if addr == "" || addr == "0" {
			return nil, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		log.Info("serving "+what, "address", ln.Addr().String())
		return ln, nil
	}
	if ln, err := listen("metrics", o.metricsAddress); err != nil {
		return err
	} else if ln != nil {
		srv := base.Metrics.NewServer(ln)
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(shutdown) //nolint:contextcheck // the root context is already done
		})
	}
	health := healthz.NewServer(o.healthzTimeout)
	if ln, err := listen("healthz", o.healthzAddress); err != nil {
		return err
	} else if ln != nil {
		g.Go(func() error { return health.Start(ctx, ln) })
	}

	elected := make(chan struct{})
	if o.leaderElect {
		id, err := os.Hostname()
		if err != nil {
			return err
		}
		lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.leaseNamespace, "cert-manager-controller",
			base.Client.CoreV1(), base.Client.CoordinationV1(),
			resourcelock.ResourceLockConfig{Identity: id + "-external-cert-manager-controller", EventRecorder: base.Recorder})
		if err != nil {
			return err
		}
		lost := make(chan struct{})
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   o.leaseDuration,
			RenewDeadline:   o.renewDeadline,
			RetryPeriod:     o.retryPeriod,
			ReleaseOnCancel: true,
			WatchDog:        health.LeaderHealthzAdaptor,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { close(elected) },
				OnStoppedLeading: func() { close(lost) },
			},
		})
		if err != nil {
			return err
		}
		log.Info("waiting for the leader election Lease", "namespace", o.leaseNamespace)
		g.Go(func() error {
			elector.Run(ctx)
			select {
			case <-ctx.Done():
				return nil
			case <-lost:
				return errors.New("leader election lost")
			}
		})
	} else {
		close(elected)
	}
	select {
	case <-ctx.Done():
		return g.Wait()
	case <-elected:
	}

	for _, name := range sets.List(enabled) {
		construct, ok := controller.Known()[name]
		if !ok {
			return fmt.Errorf("controller %s is not registered", name)
		}
		loop, err := construct(factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", name, err)
		}
		log.Info("starting controller", "controller", name)
		g.Go(func() error { return loop.Run(o.workers, ctx) })
	}
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	if gatewayAPI(o) {
		base.GWShared.Start(ctx.Done())
	}
	err = g.Wait()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("control loops exited")
	return nil
}

func contextFactory(ctx context.Context, o *options) (*controller.ContextFactory, error) {
	var quantities [4]resource.Quantity
	for i, s := range []string{o.solverRequestCPU, o.solverRequestMemory, o.solverLimitsCPU, o.solverLimitsMemory} {
		q, err := resource.ParseQuantity(s)
		if err != nil {
			return nil, fmt.Errorf("acme-http01-solver resource %q: %w", s, err)
		}
		quantities[i] = q
	}
	nameservers := o.dns01Nameservers
	if len(nameservers) == 0 {
		nameservers = dnsutil.RecursiveNameservers
	}
	return controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         o.kubeconfig,
		APIServerHost:      o.master,
		KubernetesAPIQPS:   o.qps,
		KubernetesAPIBurst: o.burst,
		Namespace:          o.namespace,
		ACMEOptions: controller.ACMEOptions{
			HTTP01SolverImage:                 o.solverImage,
			HTTP01SolverResourceRequestCPU:    quantities[0],
			HTTP01SolverResourceRequestMemory: quantities[1],
			HTTP01SolverResourceLimitsCPU:     quantities[2],
			HTTP01SolverResourceLimitsMemory:  quantities[3],
			ACMEHTTP01SolverRunAsNonRoot:      o.solverRunAsNonRoot,
			HTTP01SolverNameservers:           o.solverNameservers,
			DNS01Nameservers:                  nameservers,
			DNS01CheckAuthoritative:           !o.dns01NameserversOnly,
			DNS01CheckRetryPeriod:             o.dns01RetryPeriod,
		},
		SchedulerOptions: controller.SchedulerOptions{MaxConcurrentChallenges: o.maxChallenges},
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        o.clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: o.clusterIssuerAmbientCreds,
			IssuerAmbientCredentials:        o.issuerAmbientCreds,
		},
		IngressShimOptions: o.ingressShim,
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           o.ownerRef,
			CopiedAnnotationPrefixes:                 o.copiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: o.minBackoff,
			CertificateRequestMaximumBackoffDuration: o.maxBackoff,
		},
		ConfigOptions: controller.ConfigOptions{EnableGatewayAPI: gatewayAPI(o)},
	})
}
