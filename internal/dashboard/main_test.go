package dashboard_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/timq/timq/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.LeakOptions()...) }
