// Command testenv runs a throw-away Kubernetes control plane, a real etcd plus a real kube-apiserver on
// loopback, for the cluster tests and the local demo, and mints ServiceAccount tokens against it.
//
// It uses the Go standard library only, so it stays small and independent of Kubernetes API churn.
// The design is ../shared/design/control-plane.md, sections 6 to 8; tests/control-plane/README.md shows usage.
//
//	testenv up    [--dir DIR] [--port N] [--bin-dir D] [--timeout 120s] [--audit] [--keep] [--exit-on-stdin-eof]
//	testenv token --dir DIR -n NAMESPACE --sa NAME [--duration 1h] [--out FILE]
//	testenv down  --dir DIR [--timeout 30s]
//	testenv restart-apiserver --dir DIR [--timeout 120s]
//
// Only `up` writes to standard output: one JSON line once the apiserver is ready. Diagnostics go to stderr.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	startAttempts  = 3                // whole start-up attempts when a picked port was taken meanwhile
	stopGrace      = 10 * time.Second // per child, between SIGTERM and SIGKILL
	pollInterval   = 250 * time.Millisecond
	logTailLines   = 50
	certValidity   = 10 * 365 * 24 * time.Hour // throw-away PKI: only clock skew at the start matters
	minTokenExpiry = 10 * time.Minute          // the apiserver rejects shorter TokenRequests
)

// Files and directories that `up` owns inside DIR. A stale copy from an earlier run is removed at start,
// and all of them are removed at exit unless --keep (DIR itself too when testenv created it).
const (
	fileCACert          = "ca.crt"
	fileCAKey           = "ca.key"
	fileServerCert      = "apiserver.crt"
	fileServerKey       = "apiserver.key"
	fileAdminCert       = "admin.crt"
	fileAdminKey        = "admin.key"
	fileSAKey           = "sa.key"
	fileTokens          = "tokens.csv"
	fileAuditPolicy     = "audit-policy.yaml"
	fileAuditLog        = "audit.log"
	fileAdminKubeconfig = "admin.kubeconfig"
	fileTokenKubeconfig = "admin-token.kubeconfig"
	fileEnv             = "env"
	fileReady           = "ready"
	filePID             = "testenv.pid"
	fileRestarts        = "apiserver-restarts"
	dirCert             = "pki"
	dirEtcd             = "etcd"
	dirLogs             = "logs"
)

var ownedEntries = []string{
	fileCACert, fileCAKey, fileServerCert, fileServerKey, fileAdminCert, fileAdminKey, fileSAKey, fileTokens,
	fileAuditPolicy, fileAuditLog, fileAdminKubeconfig, fileTokenKubeconfig, fileEnv, fileReady, filePID,
	fileRestarts, dirCert, dirEtcd, dirLogs,
}

// Logs every request except health and version probes, at level Metadata: verb, resource, subresource,
// namespace, user and user agent, but no bodies, so no token ever reaches the log. Only the
// ResponseComplete stage (plus ResponseStarted for watches) is kept, so one request is one event.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
- RequestReceived
rules:
- level: None
  nonResourceURLs:
  - /healthz*
  - /livez*
  - /readyz*
  - /version
- level: Metadata
`

var (
	errPortInUse = errors.New("a port was taken by another process")
	errStopped   = errors.New("stopped")
)

// Pdeathsig (see startChild) is delivered when the *thread* that forked the child exits, not the process.
// Locking the main goroutine to the main thread, which lives exactly as long as the process, and starting
// every child from the main goroutine makes the children die with testenv, even on SIGKILL.
func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "up":
		err = runUp(args)
	case "token":
		err = runToken(args)
	case "down":
		err = runDown(args)
	case "restart-apiserver":
		err = runRestartAPIServer(args)
	case "help", "-h", "--help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "testenv: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
	if err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  testenv up    [--dir DIR] [--port N] [--bin-dir D] [--timeout 120s] [--audit] [--keep] [--exit-on-stdin-eof]
  testenv token --dir DIR -n NAMESPACE --sa NAME [--duration 1h] [--out FILE]
  testenv down  --dir DIR [--timeout 30s]
  testenv restart-apiserver --dir DIR [--timeout 120s]
Run "testenv COMMAND -h" for the flags of one command.
`)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
}

// parseFlags parses args and rejects positional arguments, which are always a typo here.
func parseFlags(fs *flag.FlagSet, args []string) {
	_ = fs.Parse(args) // ExitOnError: exits by itself
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "testenv %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		os.Exit(2)
	}
}

// ---------------------------------------------------------------------------------------------------------
// up

type upOptions struct {
	dir            string
	binDir         string
	port           int
	timeout        time.Duration
	audit          bool
	keep           bool
	exitOnStdinEOF bool
}

func parseUpFlags(args []string) upOptions {
	var o upOptions
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	fs.StringVar(&o.dir, "dir", "", "state directory (default: a new temporary directory)")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory holding etcd and kube-apiserver (default: testenv's own)")
	fs.IntVar(&o.port, "port", 0, "apiserver port on 127.0.0.1 (default: a free one)")
	fs.DurationVar(&o.timeout, "timeout", 120*time.Second, "how long to wait for etcd and the apiserver")
	fs.BoolVar(&o.audit, "audit", false, "write an audit log of every non-health request to DIR/audit.log")
	fs.BoolVar(&o.keep, "keep", false, "keep DIR at exit")
	fs.BoolVar(&o.exitOnStdinEOF, "exit-on-stdin-eof", false, "also stop when standard input is closed")
	parseFlags(fs, args)
	if o.port < 0 || o.port > 65535 {
		fmt.Fprintf(os.Stderr, "testenv up: --port %d is out of range\n", o.port)
		os.Exit(2)
	}
	return o
}

// testEnv is one control plane: its state directory, credentials, ports and child processes.
type testEnv struct {
	opts         upOptions
	dir          string // absolute
	createdDir   bool
	etcdBin      string
	apiserverBin string

	caPEM      []byte
	adminCert  []byte
	adminKey   []byte
	adminToken string

	apiPort, etcdPort, etcdPeerPort int
	etcd, apiserver                 *child
	restarts                        int            // apiserver restarts done by restart-apiserver
	restartSignal                   chan os.Signal // SIGUSR1: restart the apiserver
}

func runUp(args []string) error {
	// A test harness may close our stdout or stderr pipe early; a write must then fail with EPIPE instead
	// of killing testenv before it has stopped its children and cleaned up. Notify, not Ignore: an ignored
	// signal would be inherited by the children across exec.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	opts := parseUpFlags(args)
	ctx, release := stopContext(opts.exitOnStdinEOF)
	defer release()

	env, err := newTestEnv(opts)
	if err != nil {
		return err
	}
	// Registered before anything starts: SIGUSR1's default action would end testenv.
	env.restartSignal = make(chan os.Signal, 1)
	signal.Notify(env.restartSignal, syscall.SIGUSR1)
	defer signal.Stop(env.restartSignal)
	// Deferred calls run last-in first-out: children stop before their files are removed.
	defer env.removeFiles()
	defer env.stopChildren()

	if err := env.setUp(); err != nil {
		return err
	}
	if err := env.start(ctx); err != nil {
		if !errors.Is(err, errStopped) {
			env.printLogTails()
		}
		return err
	}
	if err := env.publish(); err != nil {
		return err
	}
	return env.serve(ctx)
}

// stopContext is cancelled by SIGINT, SIGTERM or SIGHUP and, with watchStdin, by end of input on stdin:
// the Rust test helper holds our stdin pipe, so however the test process dies, the control plane follows.
func stopContext(watchStdin bool) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		if s, ok := <-sigs; ok {
			cancel(fmt.Errorf("received %v", s))
		}
	}()
	if watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel(errors.New("standard input closed"))
		}()
	}
	return ctx, func() {
		signal.Stop(sigs)
		cancel(nil)
	}
}

func newTestEnv(opts upOptions) (*testEnv, error) {
	e := &testEnv{opts: opts}
	var err error
	if e.etcdBin, e.apiserverBin, err = findBinaries(opts.binDir); err != nil {
		return nil, err
	}
	if opts.port != 0 {
		// Fail at once with a clear message rather than after three apiserver start attempts.
		if err := checkPortFree(opts.port); err != nil {
			return nil, err
		}
	}
	if e.dir, e.createdDir, err = prepareDir(opts.dir); err != nil {
		return nil, err
	}
	if e.createdDir && !opts.keep {
		logf("state directory %s (removed at exit)", e.dir)
	} else {
		logf("state directory %s", e.dir)
	}
	return e, nil
}

// setUp writes everything the children need before they start, and the pid file for `testenv down`.
func (e *testEnv) setUp() error {
	if err := writeFileAtomic(e.path(filePID), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(e.path(dirCert), 0o700); err != nil {
		return err
	}
	return e.writePKI()
}

func (e *testEnv) path(name string) string { return filepath.Join(e.dir, name) }

func (e *testEnv) server() string { return fmt.Sprintf("https://127.0.0.1:%d", e.apiPort) }

// findBinaries locates etcd and kube-apiserver, by default next to the testenv executable, which is where
// build.sh puts all of them.
func findBinaries(binDir string) (etcd, apiserver string, err error) {
	if binDir == "" {
		exe, err := os.Executable()
		if err == nil {
			exe, err = filepath.EvalSymlinks(exe) // a symlink on PATH must not hide the real bin dir
		}
		if err != nil {
			return "", "", fmt.Errorf("cannot locate the testenv executable (pass --bin-dir): %w", err)
		}
		binDir = filepath.Dir(exe)
	}
	var paths []string
	for _, name := range []string{"etcd", "kube-apiserver"} {
		p := filepath.Join(binDir, name)
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("no executable %s in %s: build it with tests/control-plane/build.sh "+
				"(make control-plane) or pass --bin-dir", name, binDir)
		}
		paths = append(paths, p)
	}
	return paths[0], paths[1], nil
}

func checkPortFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("--port %d is not free: %w", port, err)
	}
	return l.Close()
}

// prepareDir makes dir absolute, creating it when needed (a new temporary directory when dir is empty).
// In a directory that already existed it refuses to run beside a live `up` and clears the stale state of an
// earlier run, above all its "ready" file, which would otherwise fool a script polling for it.
func prepareDir(dir string) (abs string, created bool, err error) {
	if dir == "" {
		abs, err = os.MkdirTemp("", "testenv-")
		return abs, true, err
	}
	if abs, err = filepath.Abs(dir); err != nil {
		return "", false, err
	}
	switch _, err := os.Stat(abs); {
	case errors.Is(err, fs.ErrNotExist):
		return abs, true, os.MkdirAll(abs, 0o700)
	case err != nil:
		return "", false, err
	}
	if pid := runningUp(abs); pid != 0 {
		return "", false, fmt.Errorf("testenv up (pid %d) is already running in %s; stop it with "+
			"`testenv down --dir %s`", pid, abs, dir)
	}
	return abs, false, removeEntries(abs, ownedEntries)
}

func removeEntries(dir string, names []string) error {
	var errs []error
	for _, name := range names {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, name)))
	}
	return errors.Join(errs...)
}

// removeFiles is the last step of `up`. "ready" and the pid file always go, since they describe a live
// control plane; everything else stays with --keep for inspection.
func (e *testEnv) removeFiles() {
	var err error
	switch {
	case e.opts.keep:
		err = removeEntries(e.dir, []string{fileReady, filePID})
	case e.createdDir:
		err = os.RemoveAll(e.dir)
	default:
		err = removeEntries(e.dir, ownedEntries)
	}
	if err != nil {
		logf("cleaning up %s: %v", e.dir, err)
	}
}

// ---------------------------------------------------------------------------------------------------------
// PKI

// certKey is a certificate with its private key, in parsed and in PEM form.
type certKey struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// writePKI generates the CA, the serving and admin certificates, the ServiceAccount signing key and the
// static admin token, and writes them, with the audit policy when asked, into DIR.
func (e *testEnv) writePKI() error {
	ca, err := newCertKey(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "testenv-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, nil)
	if err != nil {
		return err
	}
	// IP 127.0.0.1 is what clients dial; rustls (kube-rs) checks IP SANs strictly.
	serving, err := newCertKey(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
	if err != nil {
		return err
	}
	// O=system:masters is bound to cluster-admin by RBAC's bootstrap policy; this is envtest's identity.
	admin, err := newCertKey(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca)
	if err != nil {
		return err
	}
	saKey, err := newSAKeyPEM()
	if err != nil {
		return err
	}
	e.caPEM, e.adminCert, e.adminKey = ca.certPEM, admin.certPEM, admin.keyPEM
	e.adminToken = randomHex(32)

	files := []fileSpec{
		{fileCACert, ca.certPEM, 0o644},
		{fileCAKey, ca.keyPEM, 0o600},
		{fileServerCert, serving.certPEM, 0o644},
		{fileServerKey, serving.keyPEM, 0o600},
		{fileAdminCert, admin.certPEM, 0o644},
		{fileAdminKey, admin.keyPEM, 0o600},
		{fileSAKey, saKey, 0o600},
		// token,user,uid,groups (apiserver/pkg/authentication/token/tokenfile)
		{fileTokens, []byte(e.adminToken + ",admin-token,uid-admin,system:masters\n"), 0o600},
	}
	if e.opts.audit {
		files = append(files, fileSpec{fileAuditPolicy, []byte(auditPolicy), 0o644})
	}
	return e.writeFiles(files)
}

// newCertKey creates an ECDSA P-256 key and a certificate from tmpl, signed by parent, or self-signed when
// parent is nil. x509.CreateCertificate fills in a random serial number and the key identifiers.
func newCertKey(tmpl *x509.Certificate, parent *certKey) (*certKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-time.Hour) // tolerate a little clock skew
	tmpl.NotAfter = now.Add(certValidity)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("creating certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := pkcs8PEM(key)
	if err != nil {
		return nil, err
	}
	return &certKey{cert: cert, key: key, certPEM: pemBlock("CERTIFICATE", der), keyPEM: keyPEM}, nil
}

// newSAKeyPEM returns the ServiceAccount signing key. It is RSA, unlike the TLS keys: the apiserver reads
// --service-account-key-file with keyutil.ParsePublicKeysPEM, which accepts RSA keys in PKCS#8 but ECDSA
// private keys only in SEC1 ("EC PRIVATE KEY"), so a PKCS#8 ECDSA key there makes the apiserver refuse to start.
func newSAKeyPEM() ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return pkcs8PEM(key)
}

func pkcs8PEM(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------------------------------------
// Starting and stopping the children

// start brings up etcd and the apiserver. Ports are picked by binding to port 0 and closing again, so
// another process can take one before our child binds it; then the whole start is retried with new ports.
func (e *testEnv) start(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := e.startOnce(ctx)
		if err == nil || !errors.Is(err, errPortInUse) || attempt == startAttempts {
			return err
		}
		logf("%v; retrying with new ports (attempt %d of %d)", err, attempt+1, startAttempts)
		e.stopChildren()
	}
}

func (e *testEnv) startOnce(ctx context.Context) error {
	if err := e.pickPorts(); err != nil {
		return err
	}
	// A failed attempt may have left etcd data and logs; each attempt starts from scratch.
	if err := removeEntries(e.dir, []string{dirEtcd, dirLogs}); err != nil {
		return err
	}
	if err := os.Mkdir(e.path(dirLogs), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.timeout)
	defer cancel()
	client, err := e.adminHTTPClient()
	if err != nil {
		return err
	}
	began := time.Now()

	if e.etcd, err = startChild("etcd", e.etcdBin, e.etcdArgs(), etcdEnv(), e.path(dirLogs)); err != nil {
		return err
	}
	if err := waitReady(ctx, e.etcd, client, fmt.Sprintf("http://127.0.0.1:%d/health", e.etcdPort)); err != nil {
		return err
	}
	etcdReady := time.Now()
	logf("etcd healthy on 127.0.0.1:%d after %s", e.etcdPort, etcdReady.Sub(began).Round(time.Millisecond))

	if e.apiserver, err = startChild("kube-apiserver", e.apiserverBin, e.apiserverArgs(), os.Environ(),
		e.path(dirLogs)); err != nil {
		return err
	}
	if err := waitReady(ctx, e.apiserver, client, e.server()+"/readyz?verbose"); err != nil {
		return err
	}
	logf("kube-apiserver ready at %s after %s", e.server(), time.Since(etcdReady).Round(time.Millisecond))
	return nil
}

// pickPorts chooses free loopback ports. All listeners stay open until every port is chosen, so the three
// ports are distinct.
func (e *testEnv) pickPorts() error {
	n := 3
	if e.opts.port != 0 {
		n = 2
	}
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("picking a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	e.etcdPort, e.etcdPeerPort, e.apiPort = ports[0], ports[1], e.opts.port
	if e.opts.port == 0 {
		e.apiPort = ports[2]
	}
	return nil
}

// etcdArgs mirror envtest (controller-runtime pkg/internal/testing/controlplane/etcd.go). The apiserver
// writes through etcd on every request; fsync is pointless for throw-away data and costs seconds.
func (e *testEnv) etcdArgs() []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", e.etcdPort)
	return []string{
		"--data-dir=" + e.path(dirEtcd),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", e.etcdPeerPort),
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
}

// etcdEnv drops ETCD_* variables: etcd reads every flag from one, and a developer's settings must not
// leak into the throw-away member.
func etcdEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "ETCD_") })
}

// apiserverArgs are envtest's set with explicit TLS files; control-plane.md §7 gives the reason for each.
func (e *testEnv) apiserverArgs() []string {
	args := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", e.etcdPort),
		fmt.Sprintf("--secure-port=%d", e.apiPort),
		"--bind-address=127.0.0.1",
		"--tls-cert-file=" + e.path(fileServerCert),
		"--tls-private-key-file=" + e.path(fileServerKey),
		"--cert-dir=" + e.path(dirCert),
		"--client-ca-file=" + e.path(fileCACert),
		"--service-account-issuer=" + e.server(),
		"--service-account-signing-key-file=" + e.path(fileSAKey),
		"--service-account-key-file=" + e.path(fileSAKey),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--token-auth-file=" + e.path(fileTokens),
	}
	if e.opts.audit {
		args = append(args,
			"--audit-policy-file="+e.path(fileAuditPolicy),
			"--audit-log-path="+e.path(fileAuditLog))
	}
	return args
}

// child is a started etcd or kube-apiserver. done is closed once the process has exited and err is set.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startChild starts bin in its own process group, so that a Ctrl-C in the terminal reaches only testenv,
// which then stops the children in order, and so that stopping reaches anything the child spawned.
// It must run on the main goroutine (see init).
func startChild(name, bin string, args, env []string, logDir string) (*child, error) {
	return startChildLog(name, bin, args, env, logDir, os.O_TRUNC)
}

// startChildLog is startChild with the log file's open mode: os.O_TRUNC for a first start, os.O_APPEND for
// a restart that keeps the earlier output.
func startChildLog(name, bin string, args, env []string, logDir string, mode int) (*child, error) {
	c := &child{name: name, logPath: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|mode, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = env
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the child's process group and SIGKILL after stopGrace.
func (c *child) stop() {
	if c == nil || c.exited() {
		return
	}
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopGrace):
		logf("%s did not stop within %s; killing it", c.name, stopGrace)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-c.done
	}
}

// stopChildren stops the apiserver before etcd, so that the apiserver never sees its storage vanish.
func (e *testEnv) stopChildren() {
	e.apiserver.stop()
	e.etcd.stop()
	e.apiserver, e.etcd = nil, nil
}

// exitError describes a child that exited before it became ready, marking bind failures for a retry.
func (c *child) exitError() error {
	err := fmt.Errorf("%s exited during start-up (%v)", c.name, c.err)
	if log, _ := os.ReadFile(c.logPath); bytes.Contains(log, []byte("address already in use")) {
		return fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return err
}

// waitReady polls url until it answers 200, the child exits, the start-up timeout passes or testenv is
// asked to stop.
func waitReady(ctx context.Context, c *child, client *http.Client, url string) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	last := "no answer yet"
	for {
		err := probe(ctx, client, url)
		if err == nil {
			return nil
		}
		last = err.Error()
		select {
		case <-c.done:
			return c.exitError()
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s not ready within the start-up timeout; last probe of %s: %s", c.name, url, last)
			}
			return fmt.Errorf("%w before %s was ready: %v", errStopped, c.name, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// probe GETs url and returns nil on 200. Otherwise the error names what is still failing: for
// /readyz?verbose those are the "[-]" lines.
func probe(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var failing []string
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "[-]") {
			failing = append(failing, strings.TrimSpace(line))
		}
	}
	if len(failing) == 0 {
		failing = []string{strings.TrimSpace(string(body))}
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.Join(failing, "; "))
}

func (e *testEnv) adminHTTPClient() (*http.Client, error) {
	return httpClient(e.caPEM, e.adminCert, e.adminKey)
}

// httpClient trusts only our CA and authenticates with the client certificate. Its transport has no proxy:
// the control plane is on loopback, whatever HTTPS_PROXY says.
func httpClient(caPEM, certPEM, keyPEM []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate found")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the admin client certificate: %w", err)
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pool,
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		}},
	}, nil
}

func (e *testEnv) printLogTails() {
	for _, c := range []*child{e.etcd, e.apiserver} {
		if c != nil {
			printLogTail(c)
		}
	}
}

func printLogTail(c *child) {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		logf("cannot read %s: %v", c.logPath, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	lines = lines[max(0, len(lines)-logTailLines):]
	fmt.Fprintf(os.Stderr, "----- last %d lines of %s -----\n%s\n----- end of %s -----\n",
		len(lines), c.logPath, strings.Join(lines, "\n"), c.name)
}

// ---------------------------------------------------------------------------------------------------------
// Outputs and lifetime

// publish writes the kubeconfigs and the env file, then announces readiness: one JSON line on stdout and
// DIR/ready, in that order, so whoever sees either can use every file.
func (e *testEnv) publish() error {
	server := e.server()
	admin := credentials{cert: e.adminCert, key: e.adminKey}
	env := fmt.Sprintf("KUBECONFIG=%s\nTESTENV_DIR=%s\nTESTENV_SERVER=%s\n",
		shellQuote(e.path(fileAdminKubeconfig)), shellQuote(e.dir), shellQuote(server))
	err := e.writeFiles([]fileSpec{
		{fileAdminKubeconfig, kubeconfig(server, e.caPEM, "admin", "", admin), 0o600},
		{fileTokenKubeconfig, kubeconfig(server, e.caPEM, "admin-token", "", credentials{token: e.adminToken}), 0o600},
		{fileEnv, []byte(env), 0o644},
	})
	if err != nil {
		return err
	}
	line, err := json.Marshal(struct {
		Ready      bool   `json:"ready"`
		Server     string `json:"server"`
		Kubeconfig string `json:"kubeconfig"`
		Dir        string `json:"dir"`
	}{true, server, e.path(fileAdminKubeconfig), e.dir})
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	return writeFileAtomic(e.path(fileReady), nil, 0o644)
}

// serve waits until testenv is asked to stop (a nil error) or a child dies (an error with its log tail).
// SIGUSR1 (sent by `testenv restart-apiserver`) restarts the apiserver on the same port, PKI and etcd.
func (e *testEnv) serve(ctx context.Context) error {
	for {
		var died *child
		select {
		case <-ctx.Done():
			logf("stopping: %v", context.Cause(ctx))
			return nil
		case <-e.etcd.done:
			died = e.etcd
		case <-e.apiserver.done:
			died = e.apiserver
		case <-e.restartSignal:
			// Restarts run here, on the main goroutine, like every start (see init).
			if err := e.restartAPIServer(ctx); err != nil {
				if e.apiserver != nil {
					printLogTail(e.apiserver)
				}
				return err
			}
			continue
		}
		printLogTail(died)
		return fmt.Errorf("%s exited unexpectedly (%v)", died.name, died.err)
	}
}

// restartAPIServer stops the apiserver (SIGTERM, then SIGKILL after stopGrace), starts it again with the
// same arguments (same port, PKI, tokens and etcd, whose data is kept), waits for /readyz and then counts
// the restart in DIR/apiserver-restarts. DIR/ready is absent while the apiserver is down.
func (e *testEnv) restartAPIServer(ctx context.Context) error {
	began := time.Now()
	_ = os.Remove(e.path(fileReady))
	e.apiserver.stop()
	logf("kube-apiserver stopped for a restart after %s", time.Since(began).Round(time.Millisecond))
	client, err := e.adminHTTPClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.timeout)
	defer cancel()
	var started *child
	for attempt := 1; ; attempt++ {
		started, err = startChildLog("kube-apiserver", e.apiserverBin, e.apiserverArgs(), os.Environ(),
			e.path(dirLogs), os.O_APPEND)
		if err != nil {
			return err
		}
		e.apiserver = started
		err = waitReady(ctx, started, client, e.server()+"/readyz?verbose")
		// The old process may hold the port for a moment after it exited.
		if err == nil || !errors.Is(err, errPortInUse) || attempt == startAttempts {
			break
		}
		logf("%v; retrying the restart", err)
	}
	if err != nil {
		return fmt.Errorf("restarting kube-apiserver: %w", err)
	}
	e.restarts++
	logf("kube-apiserver restarted (#%d) at %s in %s", e.restarts, e.server(), time.Since(began).Round(time.Millisecond))
	if err := writeFileAtomic(e.path(fileRestarts), []byte(strconv.Itoa(e.restarts)+"\n"), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(e.path(fileReady), nil, 0o644)
}

type fileSpec struct {
	name string
	data []byte
	perm os.FileMode
}

func (e *testEnv) writeFiles(files []fileSpec) error {
	for _, f := range files {
		if err := writeFileAtomic(e.path(f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic writes through a temporary file in the same directory and renames it, so that a reader
// polling for path never sees a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Chmod(perm), tmp.Close())
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// shellQuote leaves plain paths and URLs bare, so that the env file also works as a dotenv file.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ---------------------------------------------------------------------------------------------------------
// Kubeconfig files

type credentials struct {
	cert, key []byte // PEM client certificate and key
	token     string
}

// kubeconfig renders a one-cluster, one-user kubeconfig. Free-form values are written as JSON strings,
// which are valid YAML double-quoted scalars.
func kubeconfig(server string, caPEM []byte, user, namespace string, cred credentials) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n")
	fmt.Fprintf(&b, "    server: %s\n    certificate-authority-data: %s\n", yamlString(server), b64(caPEM))
	fmt.Fprintf(&b, "users:\n- name: %s\n  user:\n", yamlString(user))
	if cred.token != "" {
		fmt.Fprintf(&b, "    token: %s\n", yamlString(cred.token))
	} else {
		fmt.Fprintf(&b, "    client-certificate-data: %s\n    client-key-data: %s\n", b64(cred.cert), b64(cred.key))
	}
	fmt.Fprintf(&b, "contexts:\n- name: testenv\n  context:\n    cluster: testenv\n    user: %s\n", yamlString(user))
	if namespace != "" {
		fmt.Fprintf(&b, "    namespace: %s\n", yamlString(namespace))
	}
	b.WriteString("current-context: testenv\n")
	return []byte(b.String())
}

func yamlString(s string) string {
	q, _ := json.Marshal(s) // a string always marshals
	return string(q)
}

func b64(data []byte) string { return base64.StdEncoding.EncodeToString(data) }

// readKubeconfigFields reads the scalar fields of a kubeconfig that kubeconfig() wrote: "key: value" lines,
// the first occurrence of each key winning. It is no general YAML parser and need not be one.
func readKubeconfigFields(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for line := range strings.Lines(string(data)) {
		key, value, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "- "), ": ")
		if !ok {
			continue
		}
		if strings.HasPrefix(value, `"`) {
			if err := json.Unmarshal([]byte(value), &value); err != nil {
				return nil, fmt.Errorf("%s: field %s: %w", path, key, err)
			}
		}
		if _, seen := fields[key]; !seen {
			fields[key] = value
		}
	}
	return fields, nil
}

// ---------------------------------------------------------------------------------------------------------
// token

func runToken(args []string) error {
	var dir, namespace, sa, out string
	var duration time.Duration
	fs := flag.NewFlagSet("token", flag.ExitOnError)
	fs.StringVar(&dir, "dir", "", "state directory of a running testenv up (required)")
	fs.StringVar(&namespace, "n", "", "namespace of the ServiceAccount (required)")
	fs.StringVar(&sa, "sa", "", "ServiceAccount name (required)")
	fs.DurationVar(&duration, "duration", time.Hour, "token lifetime (at least 10m)")
	fs.StringVar(&out, "out", "", "kubeconfig file to write (default: standard output)")
	parseFlags(fs, args)
	if dir == "" || namespace == "" || sa == "" {
		fmt.Fprintln(os.Stderr, "testenv token: --dir, -n and --sa are required")
		fs.Usage()
		os.Exit(2)
	}
	if duration < minTokenExpiry {
		return fmt.Errorf("--duration %s is below the apiserver's minimum of %s", duration, minTokenExpiry)
	}

	fields, err := readKubeconfigFields(filepath.Join(dir, fileAdminKubeconfig))
	if err != nil {
		return fmt.Errorf("reading the admin kubeconfig (is `testenv up --dir %s` running?): %w", dir, err)
	}
	server, caPEM, err := clusterOf(fields)
	if err != nil {
		return err
	}
	token, expires, err := requestToken(fields, server, caPEM, namespace, sa, duration)
	if err != nil {
		return err
	}
	config := kubeconfig(server, caPEM, "system:serviceaccount:"+namespace+":"+sa, namespace, credentials{token: token})
	if out == "" {
		_, err = os.Stdout.Write(config)
	} else {
		err = writeFileAtomic(out, config, 0o600)
	}
	if err == nil {
		logf("token for %s/%s expires at %s", namespace, sa, expires)
	}
	return err
}

func clusterOf(fields map[string]string) (server string, caPEM []byte, err error) {
	server = fields["server"]
	if caPEM, err = base64.StdEncoding.DecodeString(fields["certificate-authority-data"]); err != nil || server == "" {
		return "", nil, fmt.Errorf("admin kubeconfig lacks server or certificate-authority-data")
	}
	return server, caPEM, nil
}

// requestToken POSTs a TokenRequest with empty audiences, which the apiserver fills with its own
// (--api-audiences, defaulting to the issuer), so the token authenticates against this apiserver.
func requestToken(fields map[string]string, server string, caPEM []byte, namespace, sa string,
	duration time.Duration) (token, expires string, err error) {
	cert, err1 := base64.StdEncoding.DecodeString(fields["client-certificate-data"])
	key, err2 := base64.StdEncoding.DecodeString(fields["client-key-data"])
	if err := errors.Join(err1, err2); err != nil {
		return "", "", fmt.Errorf("admin kubeconfig: client certificate: %w", err)
	}
	client, err := httpClient(caPEM, cert, key)
	if err != nil {
		return "", "", err
	}
	body, _ := json.Marshal(map[string]any{ // plain data always marshals
		"apiVersion": "authentication.k8s.io/v1",
		"kind":       "TokenRequest",
		"spec": map[string]any{
			"audiences":         []string{},
			"expirationSeconds": int64(duration / time.Second),
		},
	})
	endpoint := fmt.Sprintf("%s/api/v1/namespaces/%s/serviceaccounts/%s/token", server,
		url.PathEscape(namespace), url.PathEscape(sa))
	resp, err := client.Post(endpoint, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", err
	}
	var result struct {
		Message string `json:"message"` // set on a Status (error) answer
		Status  struct {
			Token               string `json:"token"`
			ExpirationTimestamp string `json:"expirationTimestamp"`
		} `json:"status"`
	}
	_ = json.Unmarshal(respBody, &result) // a non-JSON answer is reported below with its status code
	if resp.StatusCode != http.StatusCreated || result.Status.Token == "" {
		msg := result.Message
		if msg == "" {
			msg = strings.TrimSpace(string(respBody))
		}
		return "", "", fmt.Errorf("TokenRequest for %s/%s: HTTP %d: %s", namespace, sa, resp.StatusCode, msg)
	}
	return result.Status.Token, result.Status.ExpirationTimestamp, nil
}

// ---------------------------------------------------------------------------------------------------------
// down

func runDown(args []string) error {
	var dir string
	var timeout time.Duration
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	fs.StringVar(&dir, "dir", "", "state directory of the testenv up to stop (required)")
	fs.DurationVar(&timeout, "timeout", 3*stopGrace, "how long to wait for it to exit")
	parseFlags(fs, args)
	if dir == "" {
		fmt.Fprintln(os.Stderr, "testenv down: --dir is required")
		fs.Usage()
		os.Exit(2)
	}
	pid := runningUp(dir)
	if pid == 0 {
		// Idempotent, so that a script's trap can call it whether or not `up` still runs.
		logf("no running testenv up in %s", dir)
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signalling testenv up (pid %d): %w", pid, err)
	}
	for deadline := time.Now().Add(timeout); isTestenvUp(pid); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv up (pid %d) still runs %s after SIGTERM", pid, timeout)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------------------
// restart-apiserver

// runRestartAPIServer asks the `up` running in DIR to restart its kube-apiserver (SIGUSR1) and waits until
// the restarted apiserver is ready, i.e. until DIR/apiserver-restarts counts one more restart.
func runRestartAPIServer(args []string) error {
	var dir string
	var timeout time.Duration
	fs := flag.NewFlagSet("restart-apiserver", flag.ExitOnError)
	fs.StringVar(&dir, "dir", "", "state directory of the running testenv up (required)")
	fs.DurationVar(&timeout, "timeout", 120*time.Second, "how long to wait for the restarted apiserver")
	parseFlags(fs, args)
	if dir == "" {
		fmt.Fprintln(os.Stderr, "testenv restart-apiserver: --dir is required")
		fs.Usage()
		os.Exit(2)
	}
	pid := runningUp(dir)
	if pid == 0 {
		return fmt.Errorf("no running testenv up in %s", dir)
	}
	restarts := func() int {
		data, _ := os.ReadFile(filepath.Join(dir, fileRestarts))
		n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		return n
	}
	before := restarts()
	began := time.Now()
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return fmt.Errorf("signalling testenv up (pid %d): %w", pid, err)
	}
	for deadline := time.Now().Add(timeout); restarts() <= before; time.Sleep(100 * time.Millisecond) {
		if !isTestenvUp(pid) {
			return fmt.Errorf("testenv up (pid %d) exited during the restart; see its output", pid)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not restarted within %s", timeout)
		}
	}
	logf("kube-apiserver restarted and ready after %s", time.Since(began).Round(time.Millisecond))
	return nil
}

// runningUp returns the pid recorded in DIR/testenv.pid if that process is a live `testenv up`, else 0.
func runningUp(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, filePID))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || !isTestenvUp(pid) {
		return 0
	}
	return pid
}

// isTestenvUp tells whether pid is a live `testenv up`. A pid file left behind by a killed run may name a
// recycled pid, so the command line must match too. A zombie has an empty command line and counts as gone.
func isTestenvUp(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 1 && strings.Contains(filepath.Base(args[0]), "testenv") && args[1] == "up"
}
