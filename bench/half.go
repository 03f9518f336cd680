package main

// The dtypes of the table's rows, as the dtype column and the JSON spell
// them: f32 for every row saved before rows had a dtype.
const (
	dtF32  = "f32"
	dtBF16 = "bf16"
)

// rowDType returns a row's dtype: d, or f32 when d is empty (results saved
// before rows had a dtype).
func rowDType(d string) string {
	if d == "" {
		return dtF32
	}
	return d
}
