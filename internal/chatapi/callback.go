package chatapi

import (
	"crypto/sha256"
	"encoding/hex"
)

// CallbackSign is the Sign of a Tencent webhook sent at requestTime (Unix
// seconds, as in its RequestTime query parameter) under the app's callback
// authentication token: lowercase hex sha256(token + requestTime).
func CallbackSign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}
